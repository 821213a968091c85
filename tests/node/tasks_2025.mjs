// MCP tasks as of protocol 2025-11-25, driven by the official TypeScript SDK 1.x
// (@modelcontextprotocol/sdk, pinned in tests/package.json) through its experimental API:
// client.experimental.tasks.{callToolStream, getTask, getTaskResult, listTasks, cancelTask}.
//
//   node tasks_2025.mjs stdio -- <server command> [args...]
//   CONVEYOR_KEY=... [CONVEYOR_OTHER_KEY=...] node tasks_2025.mjs http <url of /mcp>
//
// Prints one JSON object with what it observed; tests/test_tasks_interop.py asserts on it.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  LATEST_PROTOCOL_VERSION,
  TaskStatusNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

import { TERMINAL, errorOf, parseTarget, pollUntil, runScript, sleep, toolOutput } from "./common.mjs";

const RELATED_TASK = "io.modelcontextprotocol/related-task";
const TTL_MS = 60_000;
// Four progress steps over a second: long enough to poll while working, short for the suite.
const SLEEP = { name: "demo_sleep", arguments: { seconds: 1, steps: 4 } };
const QUICK = { name: "demo_sleep", arguments: { seconds: 0.5, steps: 2 } };
const LONG = { name: "demo_sleep", arguments: { seconds: 30, steps: 30 } };

const target = parseTarget();

function transportFor(key) {
  if (target.mode === "stdio") {
    // The SDK's default child env keeps only HOME, PATH and a few more; the server needs PYTHONPATH etc.
    return new StdioClientTransport({
      command: target.command,
      args: target.args,
      env: { ...process.env },
      stderr: "inherit",
    });
  }
  return new StreamableHTTPClientTransport(target.url, {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
}

async function connect(name, key) {
  const client = new Client({ name, version: "1.0.0" });
  const statusNotifications = [];
  client.setNotificationHandler(TaskStatusNotificationSchema, (notification) => {
    statusNotifications.push({ taskId: notification.params.taskId, status: notification.params.status });
  });
  await client.connect(transportFor(key));
  return { client, statusNotifications };
}

/** Creates a task with a plain tools/call carrying params.task; keeps the progress token alive. */
async function createTask(client, call, onprogress) {
  const created = await client.request(
    { method: "tools/call", params: call },
    CreateTaskResultSchema,
    { task: { ttl: TTL_MS }, ...(onprogress ? { onprogress } : {}) },
  );
  return created.task;
}

async function listAllTasks(client) {
  const tasks = [];
  let cursor;
  let pages = 0;
  do {
    const page = await client.experimental.tasks.listTasks(cursor);
    tasks.push(...page.tasks.map((task) => ({ taskId: task.taskId, status: task.status })));
    cursor = page.nextCursor;
    pages += 1;
  } while (cursor !== undefined && pages < 100);
  return { tasks, pages };
}

async function jobOf(client, taskId) {
  const result = await client.callTool({ name: "jobs_status", arguments: { job_id: taskId } });
  const job = result.structuredContent ?? {};
  return { isError: result.isError ?? false, job_id: job.job_id, status: job.status, tool: job.tool };
}

await runScript(async (summary) => {
  summary.client = { package: "@modelcontextprotocol/sdk", protocolVersion: LATEST_PROTOCOL_VERSION };
  summary.transport = target.mode;
  summary.step = "connect";
  const { client, statusNotifications } = await connect("conveyor-tasks-2025", target.key);
  const tasks = client.experimental.tasks;
  summary.serverCapabilities = client.getServerCapabilities() ?? null;

  summary.step = "tools/list";
  const { tools } = await client.listTools();
  summary.taskSupport = Object.fromEntries(
    tools.map((tool) => [tool.name, tool.execution?.taskSupport ?? null]),
  );

  // The same call without a task: the task's result must carry the same tool output.
  summary.step = "direct call";
  summary.direct = toolOutput(await client.callTool(SLEEP));

  // Task A: callToolStream creates the task, polls tasks/get, then fetches tasks/result.
  summary.step = "task A (callToolStream)";
  const a = { statuses: [], progress: [] };
  summary.streamed = a;
  const stream = tasks.callToolStream(SLEEP, CallToolResultSchema, {
    task: { ttl: TTL_MS },
    onprogress: (progress) => a.progress.push(progress),
  });
  for await (const message of stream) {
    if (message.type === "taskCreated") a.created = message.task;
    else if (message.type === "taskStatus") a.statuses.push(message.task.status);
    else if (message.type === "result") a.result = message.result;
    else if (message.type === "error") throw message.error;
  }
  a.taskId = a.created?.taskId;
  a.output = toolOutput(a.result);
  a.relatedTask = a.result?._meta?.[RELATED_TASK] ?? null;
  a.final = await tasks.getTask(a.taskId);
  a.job = await jobOf(client, a.taskId);

  // Task B: tasks/result right after creation blocks until the task is terminal.
  summary.step = "task B (tasks/result blocks)";
  const b = {};
  summary.blocking = b;
  const createdB = await createTask(client, QUICK);
  b.taskId = createdB.taskId;
  b.createdStatus = createdB.status;
  const started = Date.now();
  const resultB = await tasks.getTaskResult(b.taskId, CallToolResultSchema);
  b.waitedMs = Date.now() - started;
  b.output = toolOutput(resultB);
  b.relatedTask = resultB._meta?.[RELATED_TASK] ?? null;
  b.statusAfterResult = (await tasks.getTask(b.taskId)).status;

  // Task C: a long sleep, cancelled while running.
  summary.step = "task C (cancel)";
  const c = { progress: [] };
  summary.cancel = c;
  const createdC = await createTask(client, LONG, (progress) => c.progress.push(progress));
  c.taskId = createdC.taskId;
  // Cancel once it is really running (first progress) so the cancel interrupts a running job.
  await pollUntil(async () => c.progress.length, (count) => count > 0, { timeoutMs: 5_000 });
  c.progressBeforeCancel = c.progress.length;
  c.statusBeforeCancel = (await tasks.getTask(c.taskId)).status;
  const cancelled = await tasks.cancelTask(c.taskId);
  c.cancelReply = { taskId: cancelled.taskId, status: cancelled.status };
  c.statusAfterCancel = (
    await pollUntil(() => tasks.getTask(c.taskId), (task) => TERMINAL.has(task.status), { timeoutMs: 5_000 })
  ).status;
  c.cancelAgain = await errorOf(tasks.cancelTask(c.taskId));
  c.resultAfterCancel = await errorOf(tasks.getTaskResult(c.taskId, CallToolResultSchema));
  c.job = await jobOf(client, c.taskId);

  summary.step = "unknown task";
  summary.unknownTask = await errorOf(tasks.getTask("job_00000000000000000000000000000000"));

  // Another principal's task must stay out of this caller's list (HTTP only: stdio has one user).
  if (target.otherKey) {
    summary.step = "other principal";
    const other = await connect("conveyor-tasks-2025-other", target.otherKey);
    const foreign = await createTask(other.client, QUICK);
    summary.other = {
      taskId: foreign.taskId,
      list: await listAllTasks(other.client),
      getMine: await errorOf(other.client.experimental.tasks.getTask(a.taskId)),
      cancelMine: await errorOf(other.client.experimental.tasks.cancelTask(c.taskId)),
    };
    await other.client.close();
  }

  summary.step = "tasks/list";
  summary.list = await listAllTasks(client);

  // Notifications may trail the last reply a little.
  await sleep(300);
  summary.progressCount = a.progress.length;
  summary.statusNotifications = statusNotifications;
  summary.step = "close";
  await client.close();
  delete summary.step;
});
