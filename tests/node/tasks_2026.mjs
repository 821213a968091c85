// The 2026-07-28 tasks extension (io.modelcontextprotocol/tasks, SEP-2663), driven by the v2
// TypeScript client (@modelcontextprotocol/client) with @modelcontextprotocol/ext-tasks 0.2.2.
//
//   node tasks_2026.mjs stdio -- <server command> [args...]
//   CONVEYOR_KEY=... node tasks_2026.mjs http <url of /mcp>
//
// The v2 Client's own codecs do not know the extension's wire shapes (resultType "task",
// tasks/*), so ext-tasks needs the host to send those requests below the SDK: `rawDispatch`
// here writes JSON-RPC straight to the connected transport and takes the matching responses
// off it before the Client sees them, and `v2RequestFraming` gives the per-request _meta
// envelope the Client would have attached. That is the host's job the ext-tasks README and
// sdk-client-adapter.js describe (the MCP Inspector does the same with its RawWireChannel).
//
// Prints one JSON object with what it observed; tests/test_tasks_interop.py asserts on it.

import { Client, ProtocolError, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { DispatchError, createTaskSessionFromClient } from "@modelcontextprotocol/ext-tasks/client";

import { TERMINAL, errorOf, parseTarget, pollUntil, runScript, toolOutput } from "./common.mjs";

const PROTOCOL = "2026-07-28";
const TASKS_EXTENSION = "io.modelcontextprotocol/tasks";
const CLIENT_INFO = { name: "conveyor-tasks-2026", version: "1.0.0" };
const RAW_ID_PREFIX = "conveyor-raw-";
// testkit_long has taskSupport "required": at 2026 the server always answers it with a task.
const LONG_QUICK = { name: "testkit_long", arguments: { seconds: 0.5 } };
const LONG_SLOW = { name: "testkit_long", arguments: { seconds: 30 } };
const SHORT = { name: "demo_sleep", arguments: { seconds: 0.2, steps: 2 } };

const target = parseTarget();

function transportFor() {
  if (target.mode === "stdio") {
    return new StdioClientTransport({
      command: target.command,
      args: target.args,
      env: { ...process.env },
      stderr: "inherit",
    });
  }
  return new StreamableHTTPClientTransport(target.url, {
    requestInit: { headers: { Authorization: `Bearer ${target.key}` } },
  });
}

/**
 * The rawDispatch ext-tasks asks for: requests written straight to the transport, their
 * responses taken off it before the SDK's Protocol (which would drop them as unknown ids).
 * Every exchange is kept in `wire` so the summary shows the exact shapes the server sent.
 */
class RawWire {
  constructor(transport, { timeoutMs = 20_000 } = {}) {
    this.transport = transport;
    this.timeoutMs = timeoutMs;
    this.pending = new Map();
    this.counter = 0;
    this.wire = [];
  }

  /** Call after client.connect(): the Client has installed its onmessage by then. */
  attach() {
    const delegate = this.transport.onmessage;
    this.transport.onmessage = (message, extra) => {
      if (this.consume(message)) return;
      delegate?.(message, extra);
    };
  }

  consume(message) {
    const id = message?.id;
    if (typeof id !== "string" || !id.startsWith(RAW_ID_PREFIX)) return false;
    if (!("result" in message) && !("error" in message)) return false;
    const pending = this.pending.get(id);
    if (pending === undefined) return true; // answered after we gave up on it
    this.pending.delete(id);
    clearTimeout(pending.timer);
    pending.exchange.response = "error" in message ? { error: message.error } : { result: message.result };
    pending.resolve(
      "error" in message
        ? {
            kind: "error",
            error: {
              code: message.error.code,
              message: message.error.message,
              ...(message.error.data === undefined ? {} : { data: message.error.data }),
            },
          }
        : { kind: "result", result: message.result },
    );
    return true;
  }

  dispatch = (request, options = {}) => {
    const id = `${RAW_ID_PREFIX}${(this.counter += 1)}`;
    const message = { jsonrpc: "2.0", id, method: request.method };
    if (request.params !== undefined) message.params = request.params;
    const exchange = { method: request.method, params: stripMeta(request.params) };
    this.wire.push(exchange);
    return new Promise((resolve, reject) => {
      const fail = (error) => {
        if (!this.pending.delete(id)) return;
        clearTimeout(timer);
        reject(error);
      };
      const timer = setTimeout(
        () => fail(new DispatchError(`raw ${request.method} timed out after ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      this.pending.set(id, { resolve, timer, exchange });
      const signal = options.signal;
      signal?.addEventListener("abort", () => fail(signal.reason ?? new Error("aborted")), { once: true });
      const headers = options.context?.headers;
      this.transport
        .send(message, headers === undefined ? {} : { headers })
        .catch((error) => {
          // At 2026 a JSON-RPC error may come with an HTTP error status (the spec pairs -32601
          // with 404); the v2 transport delivers error bodies as messages only for 400 and
          // throws for the rest. The body is still the answer: take it from the HTTP error.
          const answer = errorBodyOf(error, id);
          if (answer !== undefined) {
            exchange.httpStatus = error.data.status;
            this.consume(answer);
            return;
          }
          fail(new DispatchError(`raw ${request.method} failed to send`, false, { cause: error }));
        });
    });
  };
}

function errorBodyOf(error, id) {
  if (typeof error?.data?.text !== "string") return undefined;
  try {
    const body = JSON.parse(error.data.text);
    return body?.id === id && body.error !== undefined ? body : undefined;
  } catch {
    return undefined;
  }
}

function stripMeta(params) {
  if (params === undefined || params === null || typeof params !== "object") return params;
  const { _meta, ...rest } = params;
  return rest;
}

/** A request with the 2026 per-request envelope; with or without the tasks extension declared. */
function framed(method, params, { declareTasks }) {
  return {
    method,
    params: {
      ...params,
      _meta: {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": declareTasks ? { extensions: { [TASKS_EXTENSION]: {} } } : {},
      },
    },
  };
}

function rawOutcome(response) {
  return response.kind === "error" ? { ok: false, code: response.error.code, message: response.error.message } : { ok: true, value: response.result };
}

/** Settles an execution, keeping every status the session observed on the way. */
async function settle(execution) {
  const statuses = [];
  const { outcome, lastTask } = await execution.settle({
    onEvent: (event) => {
      if (event.type === "task") statuses.push(event.task.status);
    },
  });
  return {
    statuses,
    outcome: outcome.status,
    result: outcome.status === "completed" ? outcome.result : undefined,
    error: outcome.status === "failed" ? { message: outcome.error.message, code: outcome.error.code } : undefined,
    lastTask: lastTask?.raw,
  };
}

await runScript(async (summary) => {
  summary.client = { package: "@modelcontextprotocol/client", extension: "@modelcontextprotocol/ext-tasks" };
  summary.transport = target.mode;
  summary.step = "connect";
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode: { pin: PROTOCOL } } });
  const transport = transportFor();
  await client.connect(transport);
  const raw = new RawWire(transport);
  raw.attach();
  summary.protocol = { era: client.getProtocolEra(), version: client.getNegotiatedProtocolVersion() };
  summary.serverCapabilities = client.getServerCapabilities() ?? null;

  summary.step = "session";
  const session = createTaskSessionFromClient(client, {
    endpointId: `conveyor-interop-${target.mode}`,
    rawDispatch: raw.dispatch,
    v2RequestFraming: { protocolVersion: PROTOCOL, clientInfo: CLIENT_INFO, clientCapabilities: {} },
    onError: (error) => (summary.sessionErrors ??= []).push(error.message),
  });
  summary.sessionCapabilities = session.capabilities;

  // A plain SDK call (no tasks extension in its capabilities) to a task-only tool.
  summary.step = "required tool without the extension";
  summary.withoutExtension = await errorOf(client.callTool(LONG_QUICK));

  // An optional tool: the server may answer at once or with a task; either way the session
  // must hand back the same tool output as a plain tools/call.
  summary.step = "optional tool";
  summary.direct = toolOutput(await client.callTool(SHORT));
  const optional = await session.callTool(SHORT.name, SHORT.arguments);
  summary.optional = { kind: optional.kind, ...(await settle(optional)) };
  summary.optional.output = toolOutput(summary.optional.result);

  // Create: a required tool answers with a task; settle() polls tasks/get until it ends.
  summary.step = "create";
  const created = await session.callTool(LONG_QUICK.name, LONG_QUICK.arguments, { task: { preference: "require" } });
  const c = { kind: created.kind, taskId: created.handle?.taskId };
  summary.created = c;
  Object.assign(c, await settle(created));
  c.output = toolOutput(c.result);
  c.resultType = c.result?.resultType ?? null;
  c.snapshot = (await session.task(c.taskId).snapshot()).raw;
  c.job = await jobOf(client, c.taskId);

  // The non-owning controller reads the same task: tasks/get until terminal, inlined result.
  const again = await session.task(c.taskId).result();
  c.controllerOutcome = again.status;
  c.controllerOutput = again.status === "completed" ? toolOutput(again.result) : undefined;

  // Cancel: a long task, cancelled while working. The ack ends the local lifetime at once
  // (cancellation is cooperative); tasks/get then shows the server's own terminal status.
  summary.step = "cancel";
  const slow = await session.callTool(LONG_SLOW.name, LONG_SLOW.arguments, { task: { preference: "require" } });
  const x = { kind: slow.kind, taskId: slow.handle?.taskId };
  summary.cancel = x;
  const controller = session.task(x.taskId);
  x.statusBeforeCancel = (await controller.snapshot()).status;
  await slow.cancel();
  x.localOutcome = (await slow.result()).status;
  const final = await pollUntil(() => controller.snapshot(), (task) => TERMINAL.has(task.status), {
    timeoutMs: 5_000,
  });
  x.statusAfterCancel = final.status;
  x.snapshot = final.raw;
  x.cancelAgain = await errorOf(controller.cancel());
  x.job = await jobOf(client, x.taskId);

  // What the extension leaves out or refuses, on the raw wire.
  summary.step = "raw checks";
  const rawCall = async (method, params, declareTasks = true) => {
    const outcome = rawOutcome(await raw.dispatch(framed(method, params, { declareTasks })));
    const httpStatus = raw.wire.at(-1).httpStatus;
    return httpStatus === undefined ? outcome : { ...outcome, httpStatus };
  };
  summary.raw = {
    tasksList: await rawCall("tasks/list", {}),
    tasksResult: await rawCall("tasks/result", { taskId: c.taskId }),
    unknownTask: await rawCall("tasks/get", { taskId: "job_00000000000000000000000000000000" }),
    getWithoutExtension: await rawCall("tasks/get", { taskId: c.taskId }, false),
  };

  summary.wire = raw.wire;
  summary.step = "close";
  await session.close();
  await client.close();
  delete summary.step;
});

async function jobOf(client, taskId) {
  try {
    const result = await client.callTool({ name: "jobs_status", arguments: { job_id: taskId } });
    const job = result.structuredContent ?? {};
    return { isError: result.isError ?? false, job_id: job.job_id, status: job.status, tool: job.tool };
  } catch (error) {
    return { isError: true, error: error instanceof ProtocolError ? { code: error.code, message: error.message } : String(error) };
  }
}
