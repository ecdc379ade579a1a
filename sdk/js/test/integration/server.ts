// A real `pica serve` for the integration tests, started as a process of its own so that a test can kill -9 it.
// The Python that runs it is $PICA_PYTHON (the pytest driver passes its own), else python3 on the PATH.
import { spawn, ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { PicaHttp } from "../../src/http.js";

export const PASSWORD = "correct horse battery staple";

export class ServerProcess {
  constructor(readonly proc: ChildProcess, readonly httpPort: number, readonly tcpPort: number, readonly dataDir: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  kill9(): Promise<void> {
    return new Promise((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        resolve();
        return;
      }
      this.proc.once("exit", () => resolve());
      this.proc.kill("SIGKILL");
    });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once("exit", resolve));
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
  }
}

export function workDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "pica-sdkjs-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function startServer(dir: string, httpPort = 0, tcpPort = 0): Promise<ServerProcess> {
  const ready = join(dir, `ready-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  const log = openSync(join(dir, "server.log"), "a");
  const proc = spawn(process.env.PICA_PYTHON || "python3",
    ["-m", "pica", "serve", "--host", "127.0.0.1", "--port", String(httpPort), "--tcp-port", String(tcpPort),
      "--data-dir", join(dir, "data"), "--ready-file", ready],
    { stdio: ["ignore", log, log], env: { ...process.env, PYTHONUNBUFFERED: "1" } });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (existsSync(ready)) {
      const text = readFileSync(ready, "utf8").trim();
      if (text) {
        const [http, tcp] = text.split(/\s+/).map(Number);
        return new ServerProcess(proc, http, tcp, dir);
      }
    }
    if (proc.exitCode !== null) throw new Error(`pica serve exited with ${proc.exitCode}; see ${join(dir, "server.log")}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  proc.kill("SIGKILL");
  throw new Error("pica serve did not start within 30 s");
}

/** A new user on the server: its id, name and a login. */
export async function newUser(url: string, prefix: string): Promise<{ userId: number; username: string }> {
  const username = `${prefix}${Math.random().toString(16).slice(2, 12)}`;
  const userId = await new PicaHttp({ baseUrl: url }).register(username, PASSWORD);
  return { userId, username };
}
