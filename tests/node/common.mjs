// Shared by the interop scripts: argv parsing, a hard deadline, and the one-JSON-object output.
//
//   node <script> stdio -- <server command> [args...]
//   node <script> http <url>            (API key in env CONVEYOR_KEY; CONVEYOR_OTHER_KEY optional)
//
// A script prints exactly one JSON object on stdout: what it observed. It exits 0 when the
// protocol exchange went through (the caller asserts the behaviour), non-zero on a protocol
// error, with the partial summary and the error in the same object.

export function parseTarget(argv = process.argv.slice(2)) {
  const [mode, ...rest] = argv;
  if (mode === "stdio") {
    const command = rest[0] === "--" ? rest.slice(1) : rest;
    if (command.length === 0) usage("stdio needs a server command after --");
    return { mode, command: command[0], args: command.slice(1) };
  }
  if (mode === "http") {
    if (rest.length !== 1) usage("http needs exactly one URL");
    const key = process.env.CONVEYOR_KEY;
    if (!key) usage("http needs the API key in env CONVEYOR_KEY");
    return { mode, url: new URL(rest[0]), key, otherKey: process.env.CONVEYOR_OTHER_KEY || undefined };
  }
  usage(`unknown mode ${JSON.stringify(mode)}`);
}

function usage(message) {
  process.stderr.write(`${message}\nusage: stdio -- <command> [args...] | http <url>\n`);
  process.exit(64);
}

/** Runs main(summary), prints the summary once, and exits; a deadline turns a hang into a failure. */
export async function runScript(main, { deadlineMs = 45_000 } = {}) {
  const summary = {};
  let printed = false;
  const finish = (code) => {
    if (!printed) {
      printed = true;
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    }
    process.exitCode = code;
  };
  const deadline = setTimeout(() => {
    summary.error = { message: `deadline of ${deadlineMs} ms passed`, step: summary.step };
    finish(3);
    process.exit(3);
  }, deadlineMs);
  deadline.unref();
  try {
    await main(summary);
    finish(0);
  } catch (error) {
    summary.error = describeError(error);
    finish(1);
  } finally {
    clearTimeout(deadline);
  }
  // Open handles (a child process, an SSE stream) must not keep us alive once the summary is out.
  setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
}

export function describeError(error) {
  if (error === null || typeof error !== "object") return { message: String(error) };
  const described = { name: error.name, message: error.message };
  if (error.code !== undefined) described.code = error.code;
  if (error.data !== undefined) described.data = error.data;
  if (error.cause !== undefined) described.cause = describeError(error.cause);
  return described;
}

/** The JSON-RPC error code a rejected promise carries, or the error itself when it has none. */
export async function errorOf(promise) {
  try {
    const value = await promise;
    return { ok: true, value };
  } catch (error) {
    return { ok: false, ...describeError(error) };
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until `done(value)` holds or `timeoutMs` passes; returns the last value. */
export async function pollUntil(probe, done, { timeoutMs = 10_000, intervalMs = 100 } = {}) {
  const until = Date.now() + timeoutMs;
  let value = await probe();
  while (!done(value) && Date.now() < until) {
    await sleep(intervalMs);
    value = await probe();
  }
  return value;
}

/** Only the fields a test compares: the tool result without transport-level _meta. */
export function toolOutput(result) {
  if (!result || typeof result !== "object") return result;
  const { content, structuredContent, isError } = result;
  return { content, structuredContent, isError: isError ?? false };
}

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
