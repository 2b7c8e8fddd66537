// A2A v0.3.0 conformance checks driven by the official JS SDK client (@a2a-js/sdk 0.3.14,
// `A2AClient` from `@a2a-js/sdk/client`, JSON-RPC transport).
//
//   A2A_BASE_URL=http://127.0.0.1:PORT node client.mjs
//
// Environment:
//   A2A_BASE_URL     server base URL (required); the default agent's card is at
//                    {base}/.well-known/agent-card.json, agent NAME's at
//                    {base}/agents/NAME/.well-known/agent-card.json
//   A2A_AGENT_ECHO   echo agent ending turns in input-required, no chunk delay (default: echo)
//   A2A_AGENT_SLOW   echo agent streaming word by word with a delay            (default: slow)
//   A2A_AGENT_DONE   echo agent ending turns in completed                      (default: done)
//   A2A_ONLY         comma-separated check names to run (debugging aid; default: all)
//   A2A_DEBUG=1      print stack traces of failures
//   PEER_MODE=1      running against a single-agent reference peer: per-agent cards are not
//                    fetched (every client uses the root card) and the checks that need the
//                    completed-state agent are skipped. Never set it for switchyard.
//
// Prints one `PASS name` / `FAIL name: reason` / `SKIP name: reason` line per check, then
// `js @a2a-js/sdk 0.3.14: N/M passed`, and exits 1 if any check failed.
//
// Note: A2AClient does not throw on JSON-RPC errors of unary calls; it returns the error
// response object ({jsonrpc, id, error}). Streams throw. It also rejects any response or SSE
// event whose id differs from the request's.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { A2AClient } from '@a2a-js/sdk/client';

const BASE_URL = (process.env.A2A_BASE_URL ?? '').replace(/\/+$/, '');
const AGENT_ECHO = process.env.A2A_AGENT_ECHO ?? 'echo';
const AGENT_SLOW = process.env.A2A_AGENT_SLOW ?? 'slow';
const AGENT_DONE = process.env.A2A_AGENT_DONE ?? 'done';
const PEER_MODE = process.env.PEER_MODE === '1';

const CHECK_TIMEOUT_MS = 30_000; // a hung server fails one check instead of hanging the suite
const PUSH_WAIT_MS = 10_000;

// The package's "exports" hide package.json; find it from the resolved entry point
// (node_modules/@a2a-js/sdk/dist/index.cjs).
const require = createRequire(import.meta.url);
const SDK_VERSION = JSON.parse(
  readFileSync(path.join(path.dirname(require.resolve('@a2a-js/sdk')), '..', 'package.json'), 'utf8'),
).version;
const SDK_LABEL = `js @a2a-js/sdk ${SDK_VERSION}`;

class CheckFailed extends Error {}
class Skipped extends Error {}

function expect(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const words = (n, tag) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(' ');
const textOf = (parts) =>
  (parts ?? []).filter((p) => p.kind === 'text').map((p) => p.text).join('');
const artifactsText = (task) => (task.artifacts ?? []).map((a) => textOf(a.parts)).join('');
const js = (v) => JSON.stringify(v);

function userMessage(text, taskId, contextId) {
  const m = { kind: 'message', messageId: randomUUID(), role: 'user', parts: [{ kind: 'text', text }] };
  if (taskId) m.taskId = taskId;
  if (contextId) m.contextId = contextId;
  return m;
}

// Unwraps an A2AClient unary response; a JSON-RPC error becomes a check failure.
function result(resp, what) {
  if ('error' in resp) {
    throw new CheckFailed(`${what}: JSON-RPC error ${resp.error.code} ${resp.error.message}`);
  }
  return resp.result;
}

// The JSON-RPC error code carried by a thrown SDK error (streams), if any.
function thrownCode(e) {
  return e?.errorResponse?.error?.code ?? e?.cause?.errorResponse?.error?.code;
}

// ---------------------------------------------------------------------------------------------
// Stream events
// ---------------------------------------------------------------------------------------------

function describe(ev) {
  switch (ev.kind) {
    case 'task':
      return `Task(${ev.status?.state})`;
    case 'status-update':
      return `status(${ev.status?.state}${ev.final ? ', final' : ''})`;
    case 'artifact-update':
      return `artifact(${js(textOf(ev.artifact?.parts))}, append=${ev.append}, lastChunk=${ev.lastChunk})`;
    default:
      return `${ev.kind}`;
  }
}
const describeAll = (events) => events.map(describe).join(' -> ');

const STREAM_TIMEOUT_MS = 15_000;

// Drains an SDK event stream into `events`. A server that never closes the stream after its
// final event fails with the events seen so far instead of a bare timeout.
async function collect(gen, label, events = [], onEvent = () => {}) {
  const deadline = Date.now() + STREAM_TIMEOUT_MS;
  for (;;) {
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
    });
    const next = await Promise.race([gen.next(), timeout]).finally(() => clearTimeout(timer));
    if (next === 'timeout') {
      gen.return?.().catch(() => {}); // do not wait for the pending read
      throw new CheckFailed(`${label}: stream still open after ${STREAM_TIMEOUT_MS / 1000}s; events: ${describeAll(events)}`);
    }
    if (next.done) return events;
    events.push(next.value);
    onEvent(next.value);
  }
}

// Checks append/lastChunk flags of one artifact's chunks; returns the reassembled text.
function checkChunks(chunks, where) {
  expect(chunks.length > 0, `${where}: no artifact-update events`);
  const ids = new Set(chunks.map((c) => c.artifact?.artifactId));
  expect(ids.size === 1, `${where}: chunks of several artifacts ${js([...ids])}`);
  chunks.forEach((c, i) => {
    if (i === 0) expect(!c.append, `${where}: first chunk has append=true`);
    else expect(c.append === true, `${where}: chunk ${i} lacks append=true`);
    if (i === chunks.length - 1) expect(c.lastChunk === true, `${where}: last chunk lacks lastChunk=true`);
    else expect(!c.lastChunk, `${where}: chunk ${i} of ${chunks.length} has lastChunk=true`);
  });
  return chunks.map((c) => textOf(c.artifact.parts)).join('');
}

// Task(submitted) -> status working -> artifact chunk(s) -> status endState final:true.
function checkTurnStream(events, text, endState, where) {
  const seq = describeAll(events);
  expect(events.length >= 4, `${where}: too few events: ${seq}`);
  const [first, second] = events;
  expect(first.kind === 'task', `${where}: first event is not a Task: ${seq}`);
  expect(first.status?.state === 'submitted', `${where}: first Task is not submitted: ${seq}`);
  expect(
    second.kind === 'status-update' && second.status?.state === 'working' && !second.final,
    `${where}: second event is not status-update working (final false): ${seq}`,
  );
  const chunks = events.slice(2, -1);
  expect(
    chunks.every((c) => c.kind === 'artifact-update'),
    `${where}: expected only artifact-updates between working and the final status: ${seq}`,
  );
  const last = events[events.length - 1];
  expect(last.kind === 'status-update' && last.final === true, `${where}: last event is not a final status-update: ${seq}`);
  expect(last.status?.state === endState, `${where}: final state is not ${endState}: ${seq}`);
  for (const ev of events.slice(1)) {
    expect(ev.taskId === first.id, `${where}: event taskId ${ev.taskId} != ${first.id}`);
    expect(ev.contextId === first.contextId, `${where}: event contextId ${ev.contextId} != ${first.contextId}`);
  }
  const got = checkChunks(chunks, where);
  expect(got === text, `${where}: reassembled artifact ${js(got)} != sent ${js(text)}`);
  return first;
}

// ---------------------------------------------------------------------------------------------
// Push receiver: a tiny HTTP server on an ephemeral loopback port that records every POST.
// ---------------------------------------------------------------------------------------------

async function startReceiver() {
  const posts = [];
  const server = http.createServer((req, res) => {
    const body = [];
    req.on('data', (c) => body.push(c));
    req.on('end', () => {
      posts.push({ method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(body).toString('utf8') });
      res.writeHead(200, { 'content-length': '0' });
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { posts, server, url: `http://127.0.0.1:${server.address().port}` };
}

// ---------------------------------------------------------------------------------------------
// Clients: one A2AClient per agent (plus a second, independent one for resubscribe), built
// from the card the server publishes.
// ---------------------------------------------------------------------------------------------

// fetch wrapper that keeps the raw body of the last JSON (non-SSE) response, so checks can
// see what A2AClient hides (it reports a missing "result" of a delete as null).
let lastJsonBody;
async function recordingFetch(url, init) {
  const resp = await fetch(url, init);
  if ((resp.headers.get('content-type') ?? '').startsWith('application/json')) {
    lastJsonBody = await resp.clone().text();
  }
  return resp;
}

const clients = new Map();
async function client(agent, { second = false } = {}) {
  const cardUrl = PEER_MODE
    ? `${BASE_URL}/.well-known/agent-card.json` // the peer only has the root card
    : `${BASE_URL}/agents/${agent}/.well-known/agent-card.json`;
  const key = `${cardUrl}|${second}`;
  if (!clients.has(key)) {
    // A failed card fetch is not cached, so the next check retries it.
    clients.set(key, await A2AClient.fromCardUrl(cardUrl, { fetchImpl: recordingFetch }));
  }
  return clients.get(key);
}

// message/send; returns the Task (fails on a Message or a JSON-RPC error).
async function send(agent, message, configuration) {
  const params = { message };
  if (configuration) params.configuration = configuration;
  const res = result(await (await client(agent)).sendMessage(params), 'message/send');
  expect(res?.kind === 'task', `message/send returned ${res?.kind}, not a Task`);
  return res;
}

async function getTask(agent, id, historyLength) {
  const params = { id };
  if (historyLength !== undefined) params.historyLength = historyLength;
  return result(await (await client(agent)).getTask(params), 'tasks/get');
}

async function stream(agent, message) {
  return collect((await client(agent)).sendMessageStream({ message }), 'message/stream');
}

async function waitForState(agent, id, state, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await getTask(agent, id);
    if (task.status.state === state) return task;
    if (Date.now() > deadline) {
      throw new CheckFailed(`task ${id} still ${task.status.state} after ${timeoutMs} ms, wanted ${state}`);
    }
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

async function checkCardDiscovery() {
  const c = await A2AClient.fromCardUrl(`${BASE_URL}/.well-known/agent-card.json`);
  const card = await c.getAgentCard();
  expect(card.url?.endsWith(`/agents/${AGENT_ECHO}`), `card.url ${js(card.url)} does not end in /agents/${AGENT_ECHO}`);
  expect(card.preferredTransport === 'JSONRPC', `preferredTransport is ${js(card.preferredTransport)}`);
  expect(card.protocolVersion === '0.3.0', `protocolVersion is ${js(card.protocolVersion)}`);
  expect(card.capabilities?.streaming === true, 'capabilities.streaming is not true');
  expect(card.capabilities?.pushNotifications === true, 'capabilities.pushNotifications is not true');
}

async function checkAgentCards() {
  if (PEER_MODE) throw new Skipped('PEER_MODE: the peer has no per-agent cards');
  for (const agent of new Set([AGENT_ECHO, AGENT_SLOW, AGENT_DONE])) {
    const card = await (await client(agent)).getAgentCard();
    const want = `${BASE_URL}/agents/${agent}`;
    expect(card.url === want, `card of ${agent}: url ${js(card.url)} != ${js(want)}`);
    expect(card.preferredTransport === 'JSONRPC', `card of ${agent}: preferredTransport ${js(card.preferredTransport)}`);
    expect(card.protocolVersion === '0.3.0', `card of ${agent}: protocolVersion ${js(card.protocolVersion)}`);
  }
}

async function checkSendBlocking() {
  const text = 'hello blocking world';
  const msg = userMessage(text);
  // No `configuration` at all: blocking is the default.
  const task = await send(AGENT_ECHO, msg);
  expect(task.status.state === 'input-required', `state is ${task.status.state}, want input-required`);
  expect(task.contextId, 'task has no contextId');
  expect(artifactsText(task) === text, `artifact text ${js(artifactsText(task))} != ${js(text)}`);
  const sm = task.status.message;
  expect(sm, 'status.message missing');
  expect(sm.role === 'agent', `status.message.role is ${sm.role}`);
  expect(textOf(sm.parts) === text, `status.message text ${js(textOf(sm.parts))} != ${js(text)}`);
  const history = task.history ?? [];
  const user = history.find((m) => m.messageId === msg.messageId);
  expect(user, `history (${history.length} messages) lacks the user message ${msg.messageId}`);
  expect(user.role === 'user' && textOf(user.parts) === text, 'user message in history altered');
}

async function checkSendNonBlocking() {
  const text = words(12, 'nb');
  const task = await send(AGENT_SLOW, userMessage(text), { blocking: false });
  expect(
    ['submitted', 'working', 'input-required'].includes(task.status.state),
    `non-blocking send returned state ${task.status.state}`,
  );
  const final = await waitForState(AGENT_SLOW, task.id, 'input-required');
  expect(artifactsText(final) === text, `artifact text ${js(artifactsText(final))} != ${js(text)}`);
  expect(textOf(final.status.message?.parts) === text, 'final status.message text differs from the sent text');
}

async function checkContinueTask() {
  const [text1, text2] = ['first turn', 'second turn'];
  const m1 = userMessage(text1);
  const t1 = await send(AGENT_ECHO, m1);
  expect(t1.status.state === 'input-required', `turn 1 state ${t1.status.state}`);
  const m2 = userMessage(text2, t1.id, t1.contextId);
  const t2 = await send(AGENT_ECHO, m2);
  expect(t2.id === t1.id, `turn 2 returned task ${t2.id}, not ${t1.id}`);
  expect(t2.contextId === t1.contextId, `turn 2 contextId ${t2.contextId} != ${t1.contextId}`);
  expect(t2.status.state === 'input-required', `turn 2 state ${t2.status.state}`);
  expect(textOf(t2.status.message?.parts) === text2, 'turn 2 status.message text differs from the second text');

  const got = await getTask(AGENT_ECHO, t1.id);
  const history = got.history ?? [];
  // The final agent reply may sit only in status.message; count it once.
  const ids = history.map((m) => m.messageId);
  const sm = got.status.message;
  const conv = sm && !ids.includes(sm.messageId) ? [...history, sm] : history;
  const roles = conv.map((m) => m.role);
  expect(js(roles) === js(['user', 'agent', 'user', 'agent']), `tasks/get history+status roles ${js(roles)}, want user,agent,user,agent`);
  const wantIds = [m1.messageId, t1.status.message.messageId, m2.messageId, t2.status.message.messageId];
  expect(js(conv.map((m) => m.messageId)) === js(wantIds), `history messageIds ${js(conv.map((m) => m.messageId))} != ${js(wantIds)}`);
  expect(js(conv.map((m) => textOf(m.parts))) === js([text1, text1, text2, text2]), 'history texts differ from the exchange');
}

async function checkStream() {
  const text = 'stream me word by word please';
  const events = await stream(AGENT_ECHO, userMessage(text));
  const first = checkTurnStream(events, text, 'input-required', 'message/stream');
  const stored = await getTask(AGENT_ECHO, first.id);
  expect(stored.status.state === 'input-required', `tasks/get after stream: state ${stored.status.state}`);
  expect(artifactsText(stored) === text, `tasks/get after stream: artifact ${js(artifactsText(stored))}`);
}

async function checkHistoryLength() {
  const t1 = await send(AGENT_ECHO, userMessage('one'));
  await send(AGENT_ECHO, userMessage('two', t1.id, t1.contextId));
  const full = await getTask(AGENT_ECHO, t1.id);
  const fullHistory = full.history ?? [];
  expect(fullHistory.length >= 3, `full history has ${fullHistory.length} messages, want >= 3`);
  const got = await getTask(AGENT_ECHO, t1.id, 1);
  const n = (got.history ?? []).length;
  expect(n === 1, `historyLength=1 returned ${n} messages`);
  expect(
    got.history[0].messageId === fullHistory[fullHistory.length - 1].messageId,
    'historyLength=1 did not return the most recent message',
  );
}

async function checkCancel() {
  const task = await send(AGENT_ECHO, userMessage('cancel me'));
  expect(task.status.state === 'input-required', `state before cancel ${task.status.state}`);
  const c = await client(AGENT_ECHO);
  const canceled = result(await c.cancelTask({ id: task.id }), 'tasks/cancel');
  expect(canceled.id === task.id, `tasks/cancel returned task ${canceled.id}`);
  expect(canceled.status.state === 'canceled', `tasks/cancel returned state ${canceled.status.state}`);
  const stored = await getTask(AGENT_ECHO, task.id);
  expect(stored.status.state === 'canceled', `tasks/get after cancel: state ${stored.status.state}`);
  const again = await c.cancelTask({ id: task.id });
  expect('error' in again, `second cancel succeeded (state ${again.result?.status?.state}), want error -32002`);
  expect(again.error.code === -32002, `second cancel: error ${again.error.code}, want -32002`);
}

async function checkGetUnknown() {
  const resp = await (await client(AGENT_ECHO)).getTask({ id: `no-such-task-${randomUUID()}` });
  expect('error' in resp, `tasks/get of an unknown id returned a task (${resp.result?.id})`);
  expect(resp.error.code === -32001, `error ${resp.error.code}, want -32001`);
}

async function checkResubscribe() {
  const text = words(20, 'r');
  const first = await client(AGENT_SLOW);
  const second = await client(AGENT_SLOW, { second: true });
  const original = [];
  let signalTwo;
  const twoSeen = new Promise((resolve) => (signalTwo = resolve));
  const consumer = collect(first.sendMessageStream({ message: userMessage(text) }), 'original stream', original, () => {
    if (original.length >= 2) signalTwo();
  });
  consumer.catch(() => {}); // awaited below; avoid an unhandled rejection meanwhile
  const outcome = await Promise.race([
    twoSeen.then(() => 'two'),
    consumer.then(() => 'ended', () => 'ended'),
    sleep(10_000).then(() => 'timeout'),
  ]);
  if (outcome !== 'two') {
    await consumer; // re-throws the stream's error, if any
    throw new CheckFailed(`original stream did not deliver 2 events (${outcome}): ${describeAll(original)}`);
  }
  expect(original[0].kind === 'task', `original stream did not start with a Task: ${describeAll(original)}`);
  const taskId = original[0].id;

  const resub = await collect(second.resubscribeTask({ id: taskId }), 'tasks/resubscribe');
  await consumer;

  checkTurnStream(original, text, 'input-required', 'original stream');
  const seq = describeAll(resub);
  expect(resub.length > 0, 'tasks/resubscribe delivered no events');
  expect(resub[0].kind === 'task' && resub[0].id === taskId, `resubscribe did not start with the Task: ${seq}`);
  const last = resub[resub.length - 1];
  expect(
    last.kind === 'status-update' && last.final === true && last.status?.state === 'input-required',
    `resubscribe did not end with final input-required status: ${seq}`,
  );
  const chunks = resub.filter((e) => e.kind === 'artifact-update');
  expect(chunks.length > 0, `resubscribe delivered no artifact chunks (resubscribed too late?): ${seq}`);
  expect(chunks[chunks.length - 1].lastChunk === true, `resubscribe: last chunk lacks lastChunk=true: ${seq}`);
  // The chunks seen after resubscribing must be exactly the tail of the original stream's.
  const key = (e) => [textOf(e.artifact.parts), !!e.append, !!e.lastChunk];
  const origChunks = original.filter((e) => e.kind === 'artifact-update').map(key);
  const gotChunks = chunks.map(key);
  expect(
    js(origChunks.slice(-gotChunks.length)) === js(gotChunks),
    `resubscribe chunks are not the tail of the original stream: ${js(gotChunks)} vs ${js(origChunks)}`,
  );
}

async function checkPushConfigCrud(receiver) {
  const task = await send(AGENT_ECHO, userMessage('push config crud'));
  const c = await client(AGENT_ECHO);
  const [url1, url2] = [`${receiver.url}/crud/1`, `${receiver.url}/crud/2`];

  const set1 = result(
    await c.setTaskPushNotificationConfig({
      taskId: task.id,
      pushNotificationConfig: { id: 'cfg-1', url: url1, token: 'tok-crud-1' },
    }),
    'set',
  );
  const pc = set1.pushNotificationConfig ?? {};
  expect(set1.taskId === task.id, `set: taskId ${set1.taskId}`);
  expect(pc.id === 'cfg-1' && pc.url === url1 && pc.token === 'tok-crud-1', `set: returned ${js(pc)}`);

  const got = result(await c.getTaskPushNotificationConfig({ id: task.id, pushNotificationConfigId: 'cfg-1' }), 'get');
  const gc = got.pushNotificationConfig ?? {};
  expect(got.taskId === task.id, `get: taskId ${got.taskId}`);
  expect(gc.id === 'cfg-1' && gc.url === url1 && gc.token === 'tok-crud-1', `get: returned ${js(gc)}`);

  result(
    await c.setTaskPushNotificationConfig({
      taskId: task.id,
      pushNotificationConfig: { id: 'cfg-2', url: url2, token: 'tok-crud-2' },
    }),
    'set (second)',
  );

  const listIds = async () => {
    const list = result(await c.listTaskPushNotificationConfig({ id: task.id }), 'list');
    expect(Array.isArray(list), `list: result is not an array: ${js(list)}`);
    for (const e of list) expect(e.taskId === task.id, `list: entry for task ${e.taskId}`);
    return Object.fromEntries(list.map((e) => [e.pushNotificationConfig?.id, e.pushNotificationConfig?.url]));
  };
  let listed = await listIds();
  expect(js(listed) === js({ 'cfg-1': url1, 'cfg-2': url2 }) || js(listed) === js({ 'cfg-2': url2, 'cfg-1': url1 }), `list: ${js(listed)}`);

  lastJsonBody = undefined;
  result(await c.deleteTaskPushNotificationConfig({ id: task.id, pushNotificationConfigId: 'cfg-1' }), 'delete');
  const raw = JSON.parse(lastJsonBody ?? '{}');
  expect('result' in raw && raw.result === null, `delete: response must carry "result": null, got ${lastJsonBody}`);

  listed = await listIds();
  expect(js(listed) === js({ 'cfg-2': url2 }), `list after delete: ${js(listed)}`);
}

async function checkPushDelivery(receiver) {
  const text = words(20, 'p');
  const task = await send(AGENT_SLOW, userMessage(text), { blocking: false });
  const path = `/push/${randomUUID()}`;
  result(
    await (await client(AGENT_SLOW)).setTaskPushNotificationConfig({
      taskId: task.id,
      pushNotificationConfig: { id: 'push-1', url: receiver.url + path, token: 'tok-123' },
    }),
    'set',
  );
  const deadline = Date.now() + PUSH_WAIT_MS;
  let problems = [];
  while (Date.now() < deadline) {
    problems = [];
    for (const post of receiver.posts.filter((p) => p.path === path)) {
      let body;
      try {
        body = JSON.parse(post.body);
      } catch {
        problems.push(`non-JSON body ${js(post.body.slice(0, 200))}`);
        continue;
      }
      const token = post.headers['x-a2a-notification-token'];
      if (post.method === 'POST' && body.kind === 'task' && body.id === task.id && token === 'tok-123') return;
      problems.push(`${post.method} kind=${js(body.kind)} id=${js(body.id)} token=${js(token)}`);
    }
    await sleep(100);
  }
  throw new CheckFailed(
    `no push (Task ${task.id}, X-A2A-Notification-Token: tok-123) within ${PUSH_WAIT_MS} ms; ` +
      `requests seen: ${problems.length ? problems.join('; ') : 'none'}`,
  );
}

async function checkCompletedAgent() {
  if (PEER_MODE) throw new Skipped('PEER_MODE: the peer has no completed-state agent');
  const text = 'finish this';
  const task = await send(AGENT_DONE, userMessage(text));
  expect(task.status.state === 'completed', `state ${task.status.state}, want completed`);
  expect(artifactsText(task) === text, `artifact text ${js(artifactsText(task))} != ${js(text)}`);
  const again = await (await client(AGENT_DONE)).sendMessage({
    message: userMessage('more', task.id, task.contextId),
  });
  // The spec does not fix the code (-32600 and -32602 are both seen in the wild).
  expect('error' in again, `message to a completed task succeeded (state ${again.result?.status?.state}), want a JSON-RPC error`);
  const stored = await getTask(AGENT_DONE, task.id);
  expect(stored.status.state === 'completed', `completed task changed to ${stored.status.state}`);
}

const CHECKS = [
  ['card_discovery', checkCardDiscovery],
  ['agent_cards', checkAgentCards],
  ['message_send_blocking', checkSendBlocking],
  ['message_send_non_blocking', checkSendNonBlocking],
  ['continue_task', checkContinueTask],
  ['message_stream', checkStream],
  ['tasks_get_history_length', checkHistoryLength],
  ['tasks_cancel', checkCancel],
  ['tasks_get_unknown', checkGetUnknown],
  ['tasks_resubscribe', checkResubscribe],
  ['push_config_crud', checkPushConfigCrud],
  ['push_delivery', checkPushDelivery],
  ['completed_agent', checkCompletedAgent],
];

async function main() {
  if (!BASE_URL) {
    console.error('A2A_BASE_URL is not set');
    return 2;
  }
  const receiver = await startReceiver();
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const only = new Set((process.env.A2A_ONLY ?? '').split(',').filter(Boolean));
  for (const [name, fn] of CHECKS) {
    if (only.size && !only.has(name)) continue;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`timed out after ${CHECK_TIMEOUT_MS / 1000}s`)), CHECK_TIMEOUT_MS);
    });
    try {
      await Promise.race([fn(receiver), timeout]);
      passed++;
      console.log(`PASS ${name}`);
    } catch (e) {
      if (e instanceof Skipped) {
        skipped++;
        console.log(`SKIP ${name}: ${e.message}`);
      } else {
        failed++;
        // An SDK error (HTTP error, id mismatch, bad SSE, ...) fails the check with its reason.
        const code = thrownCode(e);
        const prefix = e instanceof CheckFailed ? '' : `${e?.constructor?.name ?? 'Error'}: `;
        const reason = String(e?.message ?? e).replace(/\n/g, ' '); // one line per check
        console.log(`FAIL ${name}: ${prefix}${reason}${code !== undefined ? ` (JSON-RPC code ${code})` : ''}`);
        if (process.env.A2A_DEBUG) console.error(e);
      }
    } finally {
      clearTimeout(timer);
    }
  }
  receiver.server.close();
  console.log(`${SDK_LABEL}: ${passed}/${passed + failed} passed${skipped ? ` (${skipped} skipped)` : ''}`);
  return failed ? 1 : 0;
}

// Exit explicitly: a timed-out check may leave a stream or socket open.
main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
