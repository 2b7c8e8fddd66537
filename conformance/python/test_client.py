#!/usr/bin/env python3
"""A2A v0.3.0 conformance checks driven by the official Python SDK client (a2a-sdk 0.3.26).

Usage:
    A2A_BASE_URL=http://127.0.0.1:PORT python test_client.py

Environment:
    A2A_BASE_URL     server base URL (required); the default agent's card is at
                     {base}/.well-known/agent-card.json, agent NAME's at
                     {base}/agents/NAME/.well-known/agent-card.json
    A2A_AGENT_ECHO   echo agent ending turns in input-required, no chunk delay (default: echo)
    A2A_AGENT_SLOW   echo agent streaming word by word with a delay            (default: slow)
    A2A_AGENT_DONE   echo agent ending turns in completed                      (default: done)
    A2A_ONLY         comma-separated check names to run (debugging aid; default: all)
    A2A_DEBUG=1      print tracebacks of unexpected exceptions
    PEER_MODE=1      running against a single-agent reference peer: per-agent cards are not
                     fetched (every client uses the root card) and the checks that need the
                     completed-state agent are skipped. Never set it for switchyard.

Prints one `PASS name` / `FAIL name: reason` / `SKIP name: reason` line per check, then
`python a2a-sdk 0.3.26: N/M passed`, and exits 1 if any check failed.

Everything goes through the SDK's `ClientFactory` / `BaseClient` (JSON-RPC transport). The
0.3.26 client has no methods for tasks/pushNotificationConfig/list and /delete, so those two
are sent over the same httpx client with the SDK's own request/response models.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import traceback
import uuid

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version as pkg_version

import httpx

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientJSONRPCError
from a2a.types import (
    AgentCard,
    DeleteTaskPushNotificationConfigParams,
    DeleteTaskPushNotificationConfigRequest,
    DeleteTaskPushNotificationConfigResponse,
    GetTaskPushNotificationConfigParams,
    JSONRPCErrorResponse,
    ListTaskPushNotificationConfigParams,
    ListTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigResponse,
    Message,
    MessageSendConfiguration,
    Part,
    PushNotificationConfig,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskIdParams,
    TaskPushNotificationConfig,
    TaskQueryParams,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
)

BASE_URL = os.environ.get('A2A_BASE_URL', '').rstrip('/')
AGENT_ECHO = os.environ.get('A2A_AGENT_ECHO', 'echo')
AGENT_SLOW = os.environ.get('A2A_AGENT_SLOW', 'slow')
AGENT_DONE = os.environ.get('A2A_AGENT_DONE', 'done')
PEER_MODE = os.environ.get('PEER_MODE') == '1'

CHECK_TIMEOUT_S = 30  # a hung server fails one check instead of hanging the suite
PUSH_WAIT_S = 10
SDK_LABEL = f'python a2a-sdk {pkg_version("a2a-sdk")}'


class CheckFailed(Exception):
    """An assertion of a check did not hold."""


class Skipped(Exception):
    """The check does not apply in this mode (only raised under PEER_MODE=1)."""


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def words(n: int, tag: str) -> str:
    """A text of n distinct words, so chunk order mistakes are visible."""
    return ' '.join(f'{tag}{i}' for i in range(n))


def text_of(parts: list[Part] | None) -> str:
    return ''.join(p.root.text for p in parts or [] if isinstance(p.root, TextPart))


def artifacts_text(task: Task) -> str:
    return ''.join(text_of(a.parts) for a in task.artifacts or [])


def state_of(task: Task) -> str:
    return task.status.state.value


def user_message(text: str, task_id: str | None = None, context_id: str | None = None) -> Message:
    return Message(
        role=Role.user,
        message_id=str(uuid.uuid4()),
        parts=[Part(root=TextPart(text=text))],
        task_id=task_id,
        context_id=context_id,
    )


def rpc_error_code(exc: A2AClientJSONRPCError) -> int:
    return exc.error.code


# ---------------------------------------------------------------------------------------------
# Stream events. BaseClient yields (aggregated_task, update) pairs; update is None when the
# server sent a Task object. The SDK's ClientTaskManager mutates objects in place (the first
# chunk's artifact becomes the task's artifact and later chunks are appended to its parts), so
# every event is deep-copied the moment it is received.
# ---------------------------------------------------------------------------------------------


def capture(task: Task, update) -> Task | TaskStatusUpdateEvent | TaskArtifactUpdateEvent:
    return (task if update is None else update).model_copy(deep=True)


def describe(ev) -> str:
    if isinstance(ev, Task):
        return f'Task({state_of(ev)})'
    if isinstance(ev, TaskStatusUpdateEvent):
        return f'status({ev.status.state.value}{", final" if ev.final else ""})'
    if isinstance(ev, TaskArtifactUpdateEvent):
        return (
            f'artifact({text_of(ev.artifact.parts)!r}, append={ev.append}, '
            f'lastChunk={ev.last_chunk})'
        )
    return type(ev).__name__


def describe_all(events) -> str:
    return ' -> '.join(describe(e) for e in events)


STREAM_TIMEOUT_S = 15


async def collect(pairs, label: str, into: list | None = None) -> list:
    """Drains a BaseClient (task, update) stream into a list of captured events.

    A server that never closes the stream after its final event fails with the events seen so
    far instead of a bare timeout.
    """
    events = [] if into is None else into

    async def drain() -> None:
        async for t, u in pairs:
            events.append(capture(t, u))

    try:
        await asyncio.wait_for(drain(), STREAM_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise CheckFailed(
            f'{label}: stream still open after {STREAM_TIMEOUT_S}s; events: {describe_all(events)}'
        ) from None
    return events


def check_chunks(chunks: list[TaskArtifactUpdateEvent], where: str) -> str:
    """Checks append/lastChunk flags of one artifact's chunks; returns the reassembled text."""
    expect(chunks, f'{where}: no artifact-update events')
    artifact_ids = {c.artifact.artifact_id for c in chunks}
    expect(len(artifact_ids) == 1, f'{where}: chunks of several artifacts {artifact_ids}')
    for i, c in enumerate(chunks):
        if i == 0:
            expect(not c.append, f'{where}: first chunk has append=true')
        else:
            expect(c.append is True, f'{where}: chunk {i} lacks append=true')
        is_last = i == len(chunks) - 1
        if is_last:
            expect(c.last_chunk is True, f'{where}: last chunk lacks lastChunk=true')
        else:
            expect(not c.last_chunk, f'{where}: chunk {i} of {len(chunks)} has lastChunk=true')
    return ''.join(text_of(c.artifact.parts) for c in chunks)


def check_turn_stream(events, text: str, end_state: str, where: str) -> Task:
    """Task(submitted) -> status working -> artifact chunk(s) -> status end_state final:true."""
    seq = describe_all(events)
    expect(len(events) >= 4, f'{where}: too few events: {seq}')
    first = events[0]
    expect(isinstance(first, Task), f'{where}: first event is not a Task: {seq}')
    expect(state_of(first) == 'submitted', f'{where}: first Task is not submitted: {seq}')
    second = events[1]
    expect(
        isinstance(second, TaskStatusUpdateEvent)
        and second.status.state == TaskState.working
        and not second.final,
        f'{where}: second event is not status-update working (final false): {seq}',
    )
    chunks = events[2:-1]
    expect(
        all(isinstance(c, TaskArtifactUpdateEvent) for c in chunks),
        f'{where}: expected only artifact-updates between working and the final status: {seq}',
    )
    last = events[-1]
    expect(
        isinstance(last, TaskStatusUpdateEvent) and last.final is True,
        f'{where}: last event is not a final status-update: {seq}',
    )
    expect(last.status.state.value == end_state, f'{where}: final state is not {end_state}: {seq}')
    for ev in events[1:]:
        expect(ev.task_id == first.id, f'{where}: event taskId {ev.task_id} != {first.id}')
        expect(
            ev.context_id == first.context_id,
            f'{where}: event contextId {ev.context_id} != {first.context_id}',
        )
    got = check_chunks(chunks, where)
    expect(got == text, f'{where}: reassembled artifact {got!r} != sent {text!r}')
    return first


# ---------------------------------------------------------------------------------------------
# Push receiver: a tiny HTTP server on an ephemeral loopback port that records every POST.
# ---------------------------------------------------------------------------------------------


class PushReceiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.posts.append(
                        {'path': self.path, 'headers': dict(self.headers.items()), 'body': body}
                    )
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args):  # keep the report quiet
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# Clients, one pair (non-streaming / streaming) per agent, all built by the SDK's ClientFactory
# from the agent card the server publishes.
# ---------------------------------------------------------------------------------------------


class Env:
    def __init__(self) -> None:
        timeout = httpx.Timeout(20.0)
        self.http = httpx.AsyncClient(timeout=timeout)
        # A second, independent connection pool for tasks/resubscribe.
        self.http2 = httpx.AsyncClient(timeout=timeout)
        self.cards: dict[str, AgentCard] = {}
        self.clients: dict[tuple, object] = {}
        self.receiver = PushReceiver()

    async def close(self) -> None:
        await self.http.aclose()
        await self.http2.aclose()
        self.receiver.close()

    async def card(self, agent: str) -> AgentCard:
        if PEER_MODE:
            agent = ''  # the peer only has the root card
        if agent not in self.cards:
            base = BASE_URL if not agent else f'{BASE_URL}/agents/{agent}'
            self.cards[agent] = await A2ACardResolver(self.http, base).get_agent_card()
        return self.cards[agent]

    async def client(self, agent: str, streaming: bool = False, second: bool = False):
        key = (agent, streaming, second)
        if key not in self.clients:
            config = ClientConfig(
                streaming=streaming, httpx_client=self.http2 if second else self.http
            )
            self.clients[key] = ClientFactory(config).create(await self.card(agent))
        return self.clients[key]

    async def send(
        self, agent: str, message: Message, blocking: bool | None = None
    ) -> Task:
        """message/send; returns the Task (fails if the server answered with a Message)."""
        client = await self.client(agent)
        config = MessageSendConfiguration(blocking=blocking) if blocking is not None else None
        results = [r async for r in client.send_message(message, configuration=config)]
        expect(len(results) == 1, f'message/send yielded {len(results)} results')
        result = results[0]
        expect(not isinstance(result, Message), 'message/send returned a Message, not a Task')
        task, _ = result
        return task

    async def get_task(self, agent: str, task_id: str, history_length: int | None = None) -> Task:
        client = await self.client(agent)
        return await client.get_task(TaskQueryParams(id=task_id, history_length=history_length))

    async def stream(self, agent: str, message: Message) -> list:
        client = await self.client(agent, streaming=True)
        return await collect(client.send_message(message), 'message/stream')

    async def raw_rpc(self, agent: str, request) -> dict:
        """POSTs an SDK request model to the agent's JSON-RPC url; returns the parsed body."""
        url = (await self.card(agent)).url
        resp = await self.http.post(url, json=request.model_dump(mode='json', exclude_none=True))
        expect(resp.status_code == 200, f'{request.method}: HTTP {resp.status_code}: {resp.text}')
        body = resp.json()
        expect(body.get('id') == request.id, f'{request.method}: response id {body.get("id")!r} != {request.id!r}')
        return body


async def wait_for_state(env: Env, agent: str, task_id: str, state: str, timeout_s: float = 10) -> Task:
    deadline = time.monotonic() + timeout_s
    while True:
        task = await env.get_task(agent, task_id)
        if state_of(task) == state:
            return task
        if time.monotonic() > deadline:
            raise CheckFailed(f'task {task_id} still {state_of(task)} after {timeout_s}s, wanted {state}')
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


async def check_card_discovery(env: Env) -> None:
    card = await A2ACardResolver(env.http, BASE_URL).get_agent_card()
    expect(card.url.endswith(f'/agents/{AGENT_ECHO}'), f'card.url {card.url!r} does not end in /agents/{AGENT_ECHO}')
    expect(card.preferred_transport == 'JSONRPC', f'preferredTransport is {card.preferred_transport!r}')
    expect(card.protocol_version == '0.3.0', f'protocolVersion is {card.protocol_version!r}')
    expect(card.capabilities.streaming is True, 'capabilities.streaming is not true')
    expect(card.capabilities.push_notifications is True, 'capabilities.pushNotifications is not true')


async def check_agent_cards(env: Env) -> None:
    if PEER_MODE:
        raise Skipped('PEER_MODE: the peer has no per-agent cards')
    for agent in dict.fromkeys([AGENT_ECHO, AGENT_SLOW, AGENT_DONE]):
        card = await env.card(agent)
        want = f'{BASE_URL}/agents/{agent}'
        expect(card.url == want, f'card of {agent}: url {card.url!r} != {want!r}')
        expect(card.preferred_transport == 'JSONRPC', f'card of {agent}: preferredTransport {card.preferred_transport!r}')
        expect(card.protocol_version == '0.3.0', f'card of {agent}: protocolVersion {card.protocol_version!r}')


async def check_send_blocking(env: Env) -> None:
    text = 'hello blocking world'
    msg = user_message(text)
    # Note: BaseClient always sends configuration.blocking=true explicitly (ClientConfig.polling
    # is False); the JS suite covers the omitted-configuration default.
    task = await env.send(AGENT_ECHO, msg)
    expect(state_of(task) == 'input-required', f'state is {state_of(task)}, want input-required')
    expect(task.context_id, 'task has no contextId')
    expect(artifacts_text(task) == text, f'artifact text {artifacts_text(task)!r} != {text!r}')
    sm = task.status.message
    expect(sm is not None, 'status.message missing')
    expect(sm.role == Role.agent, f'status.message.role is {sm.role}')
    expect(text_of(sm.parts) == text, f'status.message text {text_of(sm.parts)!r} != {text!r}')
    history = task.history or []
    user = [m for m in history if m.message_id == msg.message_id]
    expect(user, f'history ({len(history)} messages) lacks the user message {msg.message_id}')
    expect(user[0].role == Role.user and text_of(user[0].parts) == text, 'user message in history altered')


async def check_send_non_blocking(env: Env) -> None:
    text = words(12, 'nb')  # 12 chunks x 50 ms: the turn outlives the non-blocking reply
    task = await env.send(AGENT_SLOW, user_message(text), blocking=False)
    # "or later": a server may legitimately have finished the turn already.
    expect(
        state_of(task) in ('submitted', 'working', 'input-required'),
        f'non-blocking send returned state {state_of(task)}',
    )
    final = await wait_for_state(env, AGENT_SLOW, task.id, 'input-required')
    expect(artifacts_text(final) == text, f'artifact text {artifacts_text(final)!r} != {text!r}')
    expect(
        final.status.message is not None and text_of(final.status.message.parts) == text,
        'final status.message text differs from the sent text',
    )


async def check_continue_task(env: Env) -> None:
    text1, text2 = 'first turn', 'second turn'
    m1 = user_message(text1)
    t1 = await env.send(AGENT_ECHO, m1)
    expect(state_of(t1) == 'input-required', f'turn 1 state {state_of(t1)}')
    m2 = user_message(text2, task_id=t1.id, context_id=t1.context_id)
    t2 = await env.send(AGENT_ECHO, m2)
    expect(t2.id == t1.id, f'turn 2 returned task {t2.id}, not {t1.id}')
    expect(t2.context_id == t1.context_id, f'turn 2 contextId {t2.context_id} != {t1.context_id}')
    expect(state_of(t2) == 'input-required', f'turn 2 state {state_of(t2)}')
    expect(
        t2.status.message is not None and text_of(t2.status.message.parts) == text2,
        'turn 2 status.message text differs from the second text',
    )
    got = await env.get_task(AGENT_ECHO, t1.id)
    history = list(got.history or [])
    # The final agent reply may sit only in status.message; count it once.
    ids = [m.message_id for m in history]
    conv = history + ([got.status.message] if got.status.message and got.status.message.message_id not in ids else [])
    roles = [m.role.value for m in conv]
    expect(roles == ['user', 'agent', 'user', 'agent'], f'tasks/get history+status roles {roles}, want user,agent,user,agent')
    want_ids = [m1.message_id, t1.status.message.message_id, m2.message_id, t2.status.message.message_id]
    expect([m.message_id for m in conv] == want_ids, f'history messageIds {[m.message_id for m in conv]} != {want_ids}')
    expect([text_of(m.parts) for m in conv] == [text1, text1, text2, text2], 'history texts differ from the exchange')


async def check_stream(env: Env) -> None:
    text = 'stream me word by word please'
    events = await env.stream(AGENT_ECHO, user_message(text))
    first = check_turn_stream(events, text, 'input-required', 'message/stream')
    stored = await env.get_task(AGENT_ECHO, first.id)
    expect(state_of(stored) == 'input-required', f'tasks/get after stream: state {state_of(stored)}')
    expect(artifacts_text(stored) == text, f'tasks/get after stream: artifact {artifacts_text(stored)!r}')


async def check_history_length(env: Env) -> None:
    t1 = await env.send(AGENT_ECHO, user_message('one'))
    await env.send(AGENT_ECHO, user_message('two', task_id=t1.id, context_id=t1.context_id))
    full = await env.get_task(AGENT_ECHO, t1.id)
    expect(len(full.history or []) >= 3, f'full history has {len(full.history or [])} messages, want >= 3')
    got = await env.get_task(AGENT_ECHO, t1.id, history_length=1)
    n = len(got.history or [])
    expect(n == 1, f'historyLength=1 returned {n} messages')
    expect(
        got.history[0].message_id == full.history[-1].message_id,
        'historyLength=1 did not return the most recent message',
    )


async def check_cancel(env: Env) -> None:
    task = await env.send(AGENT_ECHO, user_message('cancel me'))
    expect(state_of(task) == 'input-required', f'state before cancel {state_of(task)}')
    client = await env.client(AGENT_ECHO)
    canceled = await client.cancel_task(TaskIdParams(id=task.id))
    expect(canceled.id == task.id, f'tasks/cancel returned task {canceled.id}')
    expect(state_of(canceled) == 'canceled', f'tasks/cancel returned state {state_of(canceled)}')
    stored = await env.get_task(AGENT_ECHO, task.id)
    expect(state_of(stored) == 'canceled', f'tasks/get after cancel: state {state_of(stored)}')
    try:
        again = await client.cancel_task(TaskIdParams(id=task.id))
    except A2AClientJSONRPCError as e:
        expect(rpc_error_code(e) == -32002, f'second cancel: error {rpc_error_code(e)}, want -32002')
    else:
        raise CheckFailed(f'second cancel succeeded (state {state_of(again)}), want error -32002')


async def check_get_unknown(env: Env) -> None:
    unknown = f'no-such-task-{uuid.uuid4()}'
    try:
        task = await env.get_task(AGENT_ECHO, unknown)
    except A2AClientJSONRPCError as e:
        expect(rpc_error_code(e) == -32001, f'error {rpc_error_code(e)}, want -32001')
    else:
        raise CheckFailed(f'tasks/get of an unknown id returned a task ({task.id})')


async def check_resubscribe(env: Env) -> None:
    text = words(20, 'r')
    first_client = await env.client(AGENT_SLOW, streaming=True)
    second_client = await env.client(AGENT_SLOW, streaming=True, second=True)
    original: list = []
    two_seen = asyncio.Event()

    async def consume() -> None:
        async for t, u in first_client.send_message(user_message(text)):
            original.append(capture(t, u))
            if len(original) >= 2:
                two_seen.set()

    consumer = asyncio.create_task(consume())
    try:
        await resubscribe_after_two(consumer, two_seen, original, second_client, text)
    finally:
        if not consumer.done():  # a failed check must not leave the stream running
            consumer.cancel()


async def resubscribe_after_two(consumer, two_seen, original, second_client, text) -> None:
    """Once the original stream gave Task + working, resubscribe on a second connection."""
    waiter = asyncio.create_task(two_seen.wait())
    done, _ = await asyncio.wait({consumer, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if consumer.done():
            consumer.result()  # re-raise the stream's error, if any
        consumer.cancel()
        raise CheckFailed(f'original stream did not deliver 2 events: {describe_all(original)}')
    expect(isinstance(original[0], Task), f'original stream did not start with a Task: {describe_all(original)}')
    task_id = original[0].id

    resub = await collect(second_client.resubscribe(TaskIdParams(id=task_id)), 'tasks/resubscribe')
    try:
        await asyncio.wait_for(consumer, STREAM_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise CheckFailed(f'original stream still open; events: {describe_all(original)}') from None

    check_turn_stream(original, text, 'input-required', 'original stream')
    seq = describe_all(resub)
    expect(resub, 'tasks/resubscribe delivered no events')
    expect(isinstance(resub[0], Task) and resub[0].id == task_id, f'resubscribe did not start with the Task: {seq}')
    last = resub[-1]
    expect(
        isinstance(last, TaskStatusUpdateEvent) and last.final and last.status.state == TaskState.input_required,
        f'resubscribe did not end with final input-required status: {seq}',
    )
    chunks = [e for e in resub if isinstance(e, TaskArtifactUpdateEvent)]
    expect(chunks, f'resubscribe delivered no artifact chunks (resubscribed too late?): {seq}')
    expect(chunks[-1].last_chunk is True, f'resubscribe: last chunk lacks lastChunk=true: {seq}')
    # The chunks seen after resubscribing must be exactly the tail of the original stream's.
    orig_chunks = [(text_of(e.artifact.parts), bool(e.append), bool(e.last_chunk)) for e in original if isinstance(e, TaskArtifactUpdateEvent)]
    got_chunks = [(text_of(e.artifact.parts), bool(e.append), bool(e.last_chunk)) for e in chunks]
    expect(
        orig_chunks[-len(got_chunks):] == got_chunks,
        f'resubscribe chunks are not the tail of the original stream: {got_chunks} vs {orig_chunks}',
    )


async def check_push_config_crud(env: Env) -> None:
    task = await env.send(AGENT_ECHO, user_message('push config crud'))
    client = await env.client(AGENT_ECHO)
    url1, url2 = f'{env.receiver.url}/crud/1', f'{env.receiver.url}/crud/2'

    set1 = await client.set_task_callback(
        TaskPushNotificationConfig(
            task_id=task.id,
            push_notification_config=PushNotificationConfig(id='cfg-1', url=url1, token='tok-crud-1'),
        )
    )
    pc = set1.push_notification_config
    expect(set1.task_id == task.id, f'set: taskId {set1.task_id}')
    expect((pc.id, pc.url, pc.token) == ('cfg-1', url1, 'tok-crud-1'), f'set: returned {pc}')

    got = await client.get_task_callback(
        GetTaskPushNotificationConfigParams(id=task.id, push_notification_config_id='cfg-1')
    )
    gc = got.push_notification_config
    expect(got.task_id == task.id, f'get: taskId {got.task_id}')
    expect((gc.id, gc.url, gc.token) == ('cfg-1', url1, 'tok-crud-1'), f'get: returned {gc}')

    await client.set_task_callback(
        TaskPushNotificationConfig(
            task_id=task.id,
            push_notification_config=PushNotificationConfig(id='cfg-2', url=url2, token='tok-crud-2'),
        )
    )

    async def list_ids() -> dict[str, str]:
        req = ListTaskPushNotificationConfigRequest(id=str(uuid.uuid4()), params=ListTaskPushNotificationConfigParams(id=task.id))
        body = await env.raw_rpc(AGENT_ECHO, req)
        resp = ListTaskPushNotificationConfigResponse.model_validate(body)
        expect(not isinstance(resp.root, JSONRPCErrorResponse), f'list: error {body.get("error")}')
        for c in resp.root.result:
            expect(c.task_id == task.id, f'list: entry for task {c.task_id}')
        return {c.push_notification_config.id: c.push_notification_config.url for c in resp.root.result}

    listed = await list_ids()
    expect(listed == {'cfg-1': url1, 'cfg-2': url2}, f'list: {listed}')

    req = DeleteTaskPushNotificationConfigRequest(
        id=str(uuid.uuid4()),
        params=DeleteTaskPushNotificationConfigParams(id=task.id, push_notification_config_id='cfg-1'),
    )
    body = await env.raw_rpc(AGENT_ECHO, req)
    expect('error' not in body, f'delete: error {body.get("error")}')
    expect('result' in body and body['result'] is None, f'delete: response must carry "result": null, got {json.dumps(body)}')
    DeleteTaskPushNotificationConfigResponse.model_validate(body)

    listed = await list_ids()
    expect(listed == {'cfg-2': url2}, f'list after delete: {listed}')


async def check_push_delivery(env: Env) -> None:
    text = words(20, 'p')
    task = await env.send(AGENT_SLOW, user_message(text), blocking=False)
    client = await env.client(AGENT_SLOW)
    path = f'/push/{uuid.uuid4()}'
    await client.set_task_callback(
        TaskPushNotificationConfig(
            task_id=task.id,
            push_notification_config=PushNotificationConfig(id='push-1', url=env.receiver.url + path, token='tok-123'),
        )
    )
    deadline = time.monotonic() + PUSH_WAIT_S
    problems: list[str] = []
    while time.monotonic() < deadline:
        problems = []
        for post in env.receiver.snapshot():
            if post['path'] != path:
                continue
            headers = {k.lower(): v for k, v in post['headers'].items()}
            try:
                body = json.loads(post['body'])
            except ValueError:
                problems.append(f'non-JSON body {post["body"][:200]!r}')
                continue
            token = headers.get('x-a2a-notification-token')
            if body.get('kind') == 'task' and body.get('id') == task.id and token == 'tok-123':
                return
            problems.append(f'kind={body.get("kind")!r} id={body.get("id")!r} token={token!r}')
        await asyncio.sleep(0.1)
    raise CheckFailed(
        f'no push (Task {task.id}, X-A2A-Notification-Token: tok-123) within {PUSH_WAIT_S}s; '
        f'POSTs seen: {problems or "none"}'
    )


async def check_completed_agent(env: Env) -> None:
    if PEER_MODE:
        raise Skipped('PEER_MODE: the peer has no completed-state agent')
    text = 'finish this'
    task = await env.send(AGENT_DONE, user_message(text))
    expect(state_of(task) == 'completed', f'state {state_of(task)}, want completed')
    expect(artifacts_text(task) == text, f'artifact text {artifacts_text(task)!r} != {text!r}')
    try:
        again = await env.send(AGENT_DONE, user_message('more', task_id=task.id, context_id=task.context_id))
    except A2AClientJSONRPCError:
        pass  # expected; the spec does not fix the code (-32600/-32602 are both seen in the wild)
    else:
        raise CheckFailed(f'message to a completed task succeeded (state {state_of(again)}), want a JSON-RPC error')
    stored = await env.get_task(AGENT_DONE, task.id)
    expect(state_of(stored) == 'completed', f'completed task changed to {state_of(stored)}')


CHECKS = [
    ('card_discovery', check_card_discovery),
    ('agent_cards', check_agent_cards),
    ('message_send_blocking', check_send_blocking),
    ('message_send_non_blocking', check_send_non_blocking),
    ('continue_task', check_continue_task),
    ('message_stream', check_stream),
    ('tasks_get_history_length', check_history_length),
    ('tasks_cancel', check_cancel),
    ('tasks_get_unknown', check_get_unknown),
    ('tasks_resubscribe', check_resubscribe),
    ('push_config_crud', check_push_config_crud),
    ('push_delivery', check_push_delivery),
    ('completed_agent', check_completed_agent),
]


async def main() -> int:
    if not BASE_URL:
        print('A2A_BASE_URL is not set', file=sys.stderr)
        return 2
    only = {n for n in os.environ.get('A2A_ONLY', '').split(',') if n}
    env = Env()
    passed = failed = skipped = 0
    try:
        for name, fn in CHECKS:
            if only and name not in only:
                continue
            try:
                await asyncio.wait_for(fn(env), CHECK_TIMEOUT_S)
            except Skipped as e:
                skipped += 1
                print(f'SKIP {name}: {e}', flush=True)
            except CheckFailed as e:
                failed += 1
                print(f'FAIL {name}: ' + str(e).replace('\n', ' '), flush=True)
            except asyncio.TimeoutError:
                failed += 1
                print(f'FAIL {name}: timed out after {CHECK_TIMEOUT_S}s', flush=True)
            except Exception as e:  # an SDK error is a failure of the check, with its reason
                failed += 1
                reason = str(e).replace('\n', ' ')  # keep one line per check
                print(f'FAIL {name}: {type(e).__name__}: {reason}', flush=True)
                if os.environ.get('A2A_DEBUG'):
                    traceback.print_exc()
            else:
                passed += 1
                print(f'PASS {name}', flush=True)
    finally:
        await env.close()
    total = passed + failed
    summary = f'{SDK_LABEL}: {passed}/{total} passed'
    print(summary + (f' ({skipped} skipped)' if skipped else ''), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(asyncio.run(main()))
