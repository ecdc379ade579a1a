// One error type for the SDK, carrying the server's stable `code` (docs/protocol.md section 19).

/** A request refused by the server (an `error` frame or an HTTP error body), or a local failure with its own code. */
export class PicaError extends Error {
  /** Stable machine-readable code: a server code (section 19) or one of "network", "timeout", "disconnected". */
  readonly code: string;
  /** HTTP status, 0 for a socket request. */
  readonly status: number;
  /** Whether the same request may succeed later, after a backoff. */
  readonly retryable: boolean;
  /** With `rate_limited`: seconds after which the same request will be accepted (section 21.1). */
  readonly retryAfter: number | null;

  constructor(code: string, message: string, { status = 0, retryable = false, retryAfter = null }: {
    status?: number; retryable?: boolean; retryAfter?: number | null;
  } = {}) {
    super(message);
    this.name = "PicaError";
    this.code = code;
    this.status = status;
    this.retryable = retryable;
    this.retryAfter = retryAfter;
  }
}

/** Thrown to requests in flight when the connection drops: the request may or may not have been served. */
export class Disconnected extends PicaError {
  constructor() {
    super("disconnected", "not connected", { retryable: true });
    this.name = "Disconnected";
  }
}

/** The server refused the connection for good (the session ended, a close code of 4500-4999): the client stopped. */
export class GaveUp extends PicaError {
  /** The close code that ended it (section 20). */
  readonly closeCode: number;

  constructor(closeCode: number, message: string) {
    super("gave_up", message);
    this.name = "GaveUp";
    this.closeCode = closeCode;
  }
}
