// The HTTP API of docs/protocol.md section 23: JSON in and out, errors as PicaError, access tokens renewed with the
// refresh token (section 18), uploads with progress (section 26).

import { PicaError } from "./errors.js";

/** What a login or a refresh answers (section 23.2). */
export interface Tokens {
  token: string;
  expires_at: number;
  refresh_token?: string;
  refresh_expires_at?: number;
  session_id?: string;
  user_id?: number;
}

export interface ApiOptions {
  method?: string;
  token?: string | null;
  body?: unknown;
  timeoutMs?: number;
  /** Base URL of the server ("" in a page served by it: paths stay relative). */
  baseUrl?: string;
}

/** The error of an HTTP answer whose JSON body (section 23.1) is `data` (null when it was not JSON). */
function errorOf(status: number, data: any, fallback: string): PicaError {
  return new PicaError(data?.code || "http_error", data?.message || fallback, {
    status,
    retryable: Boolean(data?.retryable),
    retryAfter: typeof data?.retry_after === "number" ? data.retry_after : null,
  });
}

/** One HTTP API call: JSON in and out; a refusal, an unreachable server or a timeout throws PicaError. */
export async function api<T = any>(path: string, { method = "GET", token = null, body, timeoutMs = 15_000,
  baseUrl = "" }: ApiOptions = {}): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      cache: "no-store",
    });
  } catch {
    throw new PicaError("network", "cannot reach the server", { retryable: true });
  }
  let data: any = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw errorOf(response.status, data, response.statusText);
  }
  return data as T;
}

/** What an upload answers (section 26.1). */
export interface FileInfo {
  file_id: string;
  content_type: string;
  size: number;
  [field: string]: unknown;
}

export interface PicaHttpOptions {
  baseUrl?: string;
  token?: string | null;
  refreshToken?: string | null;
  /** Called with every new pair of tokens (login, refresh): keep them if the app restarts. */
  onTokens?: (tokens: Tokens) => void;
  /**
   * Asked before a refresh: a newer pair another holder of this session rotated meanwhile (another tab of the same
   * page), or null. Presenting a spent refresh token would end the session everywhere (section 18).
   */
  newerTokens?: () => Tokens | null;
  timeoutMs?: number;
}

/** The HTTP API with the session's tokens: an access token that expired is renewed once and the call sent again. */
export class PicaHttp {
  readonly baseUrl: string;
  token: string | null;
  refreshToken: string | null;
  private readonly onTokens: (tokens: Tokens) => void;
  private readonly newerTokens: () => Tokens | null;
  private readonly timeoutMs: number;
  private renewing: Promise<string | null> | null = null;

  constructor({ baseUrl = "", token = null, refreshToken = null, onTokens, newerTokens, timeoutMs = 15_000 }:
    PicaHttpOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = token;
    this.refreshToken = refreshToken;
    this.onTokens = onTokens ?? (() => {});
    this.newerTokens = newerTokens ?? (() => null);
    this.timeoutMs = timeoutMs;
  }

  /** An authenticated call; 401 `token_expired` renews the token with the refresh token and tries once more. */
  async request<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const send = () => api<T>(path, { method, body, token: this.token, baseUrl: this.baseUrl, timeoutMs: this.timeoutMs });
    try {
      return await send();
    } catch (exc) {
      if (!(exc instanceof PicaError && exc.code === "token_expired") || !(await this.renew())) throw exc;
      return await send();
    }
  }

  get<T = any>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  post<T = any>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>("POST", path, body);
  }

  /** Keep a new pair of tokens (a login's or a refresh's answer). */
  keep(tokens: Tokens): void {
    this.token = tokens.token;
    if (tokens.refresh_token) this.refreshToken = tokens.refresh_token;
    this.onTokens(tokens);
  }

  /**
   * A fresh access token from the refresh token, or null when the session cannot be renewed (no refresh token, or
   * the server refused it: log in again). Renewals asked for at once share one request: the server rotates the
   * refresh token, so a second request with the same one would look like a theft and end the session.
   */
  renew(): Promise<string | null> {
    if (this.renewing) return this.renewing;
    this.renewing = (async () => {
      const newer = this.newerTokens();
      if (newer && newer.refresh_token && newer.refresh_token !== this.refreshToken) {
        this.token = newer.token;
        this.refreshToken = newer.refresh_token;
        return newer.token;
      }
      if (!this.refreshToken) return null;
      try {
        const tokens = await api<Tokens>("/v1/auth/refresh", {
          method: "POST", body: { refresh_token: this.refreshToken }, baseUrl: this.baseUrl, timeoutMs: this.timeoutMs,
        });
        this.keep(tokens);
        return tokens.token;
      } catch (exc) {
        if (exc instanceof PicaError && exc.status === 401) return null;
        throw exc;
      }
    })().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  async register(username: string, password: string): Promise<number> {
    const data = await api<{ user_id: number }>("/v1/auth/register", {
      method: "POST", body: { username, password }, baseUrl: this.baseUrl, timeoutMs: this.timeoutMs,
    });
    return data.user_id;
  }

  async login(username: string, password: string): Promise<Tokens> {
    const tokens = await api<Tokens>("/v1/auth/login", {
      method: "POST", body: { username, password }, baseUrl: this.baseUrl, timeoutMs: this.timeoutMs,
    });
    this.keep(tokens);
    return tokens;
  }

  /** End this session on the server (its tokens stop working, its sockets close with 4506). */
  async logout(): Promise<void> {
    await this.post("/v1/auth/logout");
  }

  /**
   * POST /v1/files with the bytes; `onProgress(sent, total)` as they go (where the platform reports it:
   * XMLHttpRequest in browsers and React Native; elsewhere once, at the end). An expired token is renewed first.
   */
  async upload(data: Blob, filename: string, onProgress?: (sent: number, total: number) => void): Promise<FileInfo> {
    try {
      return await this.uploadOnce(data, filename, onProgress);
    } catch (exc) {
      if (!(exc instanceof PicaError && exc.code === "token_expired") || !(await this.renew())) throw exc;
      return await this.uploadOnce(data, filename, onProgress);
    }
  }

  private uploadOnce(data: Blob, filename: string, onProgress?: (sent: number, total: number) => void):
    Promise<FileInfo> {
    const url = `${this.baseUrl}/v1/files?filename=${encodeURIComponent(filename || "file")}`;
    const XHR = (globalThis as any).XMLHttpRequest;
    if (!XHR) return this.uploadByFetch(url, data, onProgress);
    return new Promise((resolve, reject) => {
      const xhr = new XHR();
      xhr.open("POST", url);
      if (this.token) xhr.setRequestHeader("Authorization", `Bearer ${this.token}`);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (event: any) => {
        if (onProgress && event.lengthComputable) onProgress(event.loaded, event.total);
      };
      xhr.onload = () => {
        let body: any = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          // not JSON: a proxy's page
        }
        if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body as FileInfo);
        else reject(errorOf(xhr.status, body, `upload failed (${xhr.status})`));
      };
      xhr.onerror = () => reject(new PicaError("network", "upload failed: the connection broke", { retryable: true }));
      xhr.send(data);
    });
  }

  private async uploadByFetch(url: string, data: Blob, onProgress?: (sent: number, total: number) => void):
    Promise<FileInfo> {
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.token ?? ""}`, "Content-Type": "application/octet-stream" },
        body: data,
      });
    } catch {
      throw new PicaError("network", "upload failed: cannot reach the server", { retryable: true });
    }
    const body: any = await response.json().catch(() => null);
    if (!response.ok || !body) {
      throw errorOf(response.status, body, `upload failed (${response.status})`);
    }
    onProgress?.(data.size, data.size);
    return body as FileInfo;
  }
}
