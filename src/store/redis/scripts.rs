//! Lua scripts: each request's writes happen in one script, atomically and in one round trip.

use std::sync::LazyLock;

use redis::Script;

use super::connection::RedisConn;

/// A script that publishes on the deployment's channels: its source says PUBLISH, and on a
/// cluster the SPUBLISH twin runs instead (see the connection module).
pub struct Publishing {
    plain: Script,
    sharded: Script,
}

impl Publishing {
    fn new(source: &str) -> Publishing {
        let sharded = source.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'");
        Publishing { plain: Script::new(source), sharded: Script::new(&sharded) }
    }

    /// The variant for `conn`'s deployment.
    pub fn on(&self, conn: &RedisConn) -> &Script {
        if conn.is_cluster() {
            &self.sharded
        } else {
            &self.plain
        }
    }
}

/// Lua shared by the scripts that touch a task's event log: `log_slices(from, to, f)` calls
/// `f(first, fields)` with the log's field names `e:<from>`..`e:<to>` in slices of at most 500
/// (a Lua call takes a bounded number of arguments), `first` the seq of the slice's first.
const LOG_SLICES: &str = r#"
local function log_slices(from, to, f)
  while from <= to do
    local fields = {}
    for s = from, math.min(to, from + 499) do fields[#fields + 1] = 'e:' .. s end
    f(from, fields)
    from = from + 500
  end
end
"#;

/// Begins a new session with its first task: the `begun` case of APPLY's session index, run
/// inside the transaction of a plain creation (see `Shared::create_plainly`). Sent as EVAL with
/// its source (which Redis compiles once and caches): a script missing from Redis's cache would
/// fail alone inside the transaction, leaving the task written without its session.
/// KEYS: 1 session, 2 app sessions, 3 user sessions, 4 session position.
/// ARGV: 1 task id, 2 user, 3 creation ms, 4 context id.
pub const BEGIN_SESSION: &str = r#"
local position = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'created', ARGV[3], 'position', position, 't:' .. ARGV[1], position)
redis.call('ZADD', KEYS[2], position, ARGV[4])
redis.call('ZADD', KEYS[3], position, ARGV[4])
return position
"#;

/// One write to a task: its new record, the events it logs (one change's, or a run of a turn's
/// progress events flushed together), queue effects and publication. The changes were computed
/// in Rust from the task at sequence ARGV[1]; the script applies them only if the task is still
/// there (optimistic concurrency across instances), else answers `conflict` and the caller
/// re-reads.
///
/// The task's event log lives in its hash next to the record: field `e:<seq>` per event, and
/// `events` counts them. One key per task keeps the keyspace small (every lookup of a task's
/// keys is a probe of Redis's main dictionary), and the record and its new events are one HSET.
/// Field `push` is set once the task has push configs: a task without any (most) costs no call
/// on its push hash.
///
/// A created task (ARGV[1] = "") also enters its session's index, which is begun (numbered with
/// the next position) when this is the context's first task: the session's hash holds its
/// tasks as fields `t:<task id>` (the task's position), so a new session is one key.
///
/// KEYS: 1 task, 2 push, 3 queue, 4 jobs, 5 job entries, 6 delayed, 7 expiry, 8 dead letters,
///       9 dead-letter index, 10 stats; on a creation also 11 session, 12 app sessions, 13 user
///       sessions, 14 session position
/// ARGV: 1 expected seq ("" = must not exist), 2 new seq, 3 task JSON, 4/5 drop events in
///       (from, to] ("" = none), 6/7 enqueue job id/JSON ("" = none), 8 ack job id, 9 TTL ms when
///       the task became terminal, 10 expire-at ms, 11 task id, 12/13 push config id/JSON,
///       14 dead letter JSON, 15 "1" = return the push configs, 16 event channel, 17 cancel
///       channel ("" unless a cancel), 18 outcome counter, 19 processing ms, 20 consumer group,
///       21 "1" = the task is live again (requeued), 22 dead letter to remove, 23 "1" = this
///       instance has an idle worker: claim the next queue entry for it, 24 this instance's
///       consumer name, 25/26/27 on a creation the user, the creation ms and the context id,
///       28 when the enqueued job is due, in ms ("" = at once: it enters the queue; else it
///       waits in the delayed set), 29 "1" = a creation whose context id was generated for it
///       (its session is new: no check that another task began it), 30 "1" = the record says
///       the task has push configs (a record written before the `push` field existed), 31 P = how many payloads to publish, 32...31+P the payloads
///       (`{"src","seq","event"[,"task"]}`), then one (`e:<seq>`, event JSON) pair per event
/// Returns {"ok", claimed entry id or "", claimed job JSON or "", push configs...}.
pub static APPLY: LazyLock<Publishing> = LazyLock::new(|| {
    Publishing::new(
        &[
            LOG_SLICES,
            r#"
local head = redis.call('HMGET', KEYS[1], 'seq', 'events', 'push')
local seq = head[1]
if ARGV[1] == '' then
  if seq then return {'exists'} end
elseif seq ~= ARGV[1] then
  return {'conflict'}
end
local logged = tonumber(head[2]) or 0
local has_push = head[3] or ARGV[30] == '1' or ARGV[13] ~= ''
if #KEYS > 10 then
  -- One counter numbers sessions and the tasks within them, so both list in creation order.
  local position = redis.call('INCR', KEYS[14])
  local task = 't:' .. ARGV[11]
  local begun = ARGV[29] == '1'
  if begun then
    redis.call('HSET', KEYS[11], 'user', ARGV[25], 'created', ARGV[26], 'position', position, task, position)
  elseif redis.call('HSETNX', KEYS[11], 'user', ARGV[25]) == 1 then
    begun = true
    redis.call('HSET', KEYS[11], 'created', ARGV[26], 'position', position, task, position)
  else
    redis.call('HSET', KEYS[11], task, position)
  end
  if begun then
    redis.call('ZADD', KEYS[12], position, ARGV[27])
    redis.call('ZADD', KEYS[13], position, ARGV[27])
  end
end
if ARGV[5] ~= '' then
  log_slices(tonumber(ARGV[4]) + 1, tonumber(ARGV[5]), function(_, fields)
    logged = logged - redis.call('HDEL', KEYS[1], unpack(fields))
  end)
end
local published = tonumber(ARGV[31])
local first = 32 + published
logged = logged + (#ARGV - first + 1) / 2
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'data', ARGV[3], 'events', logged)
for i = first, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(#ARGV, i + 999)))
end
if ARGV[13] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[12], ARGV[13])
  if not head[3] then redis.call('HSET', KEYS[1], 'push', '1') end
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
  if ARGV[28] == '' then
    local entry = redis.call('XADD', KEYS[3], '*', 'job', ARGV[7])
    redis.call('HSET', KEYS[5], ARGV[6], entry)
  else
    redis.call('ZADD', KEYS[6], ARGV[28], ARGV[6])
  end
end
if ARGV[8] ~= '' then
  local entry = redis.call('HGET', KEYS[5], ARGV[8])
  if entry then
    -- A delivered entry leaves the stream; one not yet delivered stays for a worker to discard.
    if redis.call('XACK', KEYS[3], ARGV[20], entry) == 1 then redis.call('XDEL', KEYS[3], entry) end
    redis.call('HDEL', KEYS[5], ARGV[8])
  end
  redis.call('HDEL', KEYS[4], ARGV[8])
  redis.call('ZREM', KEYS[6], ARGV[8])
end
if ARGV[9] ~= '' then
  local ttl = tonumber(ARGV[9])
  redis.call('PEXPIRE', KEYS[1], ttl)
  if has_push then redis.call('PEXPIRE', KEYS[2], ttl) end
  redis.call('ZADD', KEYS[7], ARGV[10], ARGV[11])
end
if ARGV[14] ~= '' then
  local entry = redis.call('XADD', KEYS[8], '*', 'id', ARGV[8], 'letter', ARGV[14])
  redis.call('HSET', KEYS[9], ARGV[8], entry)
end
if ARGV[18] ~= '' then redis.call('HINCRBY', KEYS[10], ARGV[18], 1) end
if ARGV[19] ~= '' then
  redis.call('HINCRBY', KEYS[10], 'processed', 1)
  redis.call('HINCRBY', KEYS[10], 'processing_ms', ARGV[19])
end
if ARGV[21] == '1' then
  redis.call('PERSIST', KEYS[1])
  if has_push then redis.call('PERSIST', KEYS[2]) end
  redis.call('ZREM', KEYS[7], ARGV[11])
end
if ARGV[22] ~= '' then
  local entry = redis.call('HGET', KEYS[9], ARGV[22])
  if entry then redis.call('XDEL', KEYS[8], entry) end
  redis.call('HDEL', KEYS[9], ARGV[22])
end
for p = 32, 31 + published do redis.call('PUBLISH', ARGV[16], ARGV[p]) end
if ARGV[17] ~= '' then redis.call('PUBLISH', ARGV[17], ARGV[11]) end
local out = {'ok', '', ''}
if ARGV[23] == '1' then
  -- The next waiting entry (usually the one just queued) goes to this instance's idle worker.
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[20], ARGV[24], 'COUNT', 1, 'STREAMS', KEYS[3], '>')
  if read and read[1] and read[1][2][1] then
    local entry = read[1][2][1]
    out[2] = entry[1]
    for f = 1, #entry[2], 2 do
      if entry[2][f] == 'job' then out[3] = entry[2][f + 1] end
    end
  end
end
if ARGV[15] == '1' and has_push then
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do out[#out + 1] = v end
end
return out
"#,
        ]
        .concat(),
    )
});

/// A task's logged events after seq ARGV[1], oldest first, as (seq, event JSON) pairs.
/// KEYS: 1 task.
pub static READ_LOG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        &[
            LOG_SLICES,
            r#"
local out = {}
local last = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
log_slices(tonumber(ARGV[1]) + 1, last, function(first, fields)
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = 1, #fields do
    if values[i] then
      out[#out + 1] = first + i - 1
      out[#out + 1] = values[i]
    end
  end
end)
return out
"#,
        ]
        .concat(),
    )
});

/// Takes a job off the queue without a task change: acknowledges and deletes its entry and
/// forgets the job. KEYS: 1 queue, 2 jobs, 3 job entries, 4 delayed. ARGV: 1 job id, 2 entry id
/// ("" = look it up), 3 group.
pub static DISCARD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local entry = ARGV[2]
if entry == '' then entry = redis.call('HGET', KEYS[3], ARGV[1]) end
if entry then
  redis.call('XACK', KEYS[1], ARGV[3], entry)
  redis.call('XDEL', KEYS[1], entry)
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"#,
    )
});

/// Schedules another attempt: the entry leaves the stream, the job (with its attempt and error
/// updated) waits in the delayed set. KEYS: 1 queue, 2 jobs, 3 job entries, 4 delayed.
/// ARGV: 1 job id, 2 job JSON, 3 due ms, 4 group.
pub static RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if entry then
  redis.call('XACK', KEYS[1], ARGV[4], entry)
  redis.call('XDEL', KEYS[1], entry)
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
return 1
"#,
    )
});

/// Moves retries that are due back onto the queue. KEYS: 1 delayed, 2 jobs, 3 job entries,
/// 4 queue. ARGV: 1 now ms, 2 limit. Returns how many moved.
pub static MOVE_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    local entry = redis.call('XADD', KEYS[4], '*', 'job', job)
    redis.call('HSET', KEYS[3], id, entry)
  end
  redis.call('ZREM', KEYS[1], id)
end
return #due
"#,
    )
});

/// Puts a reclaimed job (its worker went silent) back in the hands of this instance with its
/// attempt counted. KEYS: 1 jobs, 2 job entries. ARGV: 1 job id, 2 job JSON, 3 entry id.
/// Returns 0 when the job is gone (finished or canceled meanwhile).
pub static RECLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"#,
    )
});

/// Stores a push config and flags the task as having some (its `push` field).
/// KEYS: 1 task, 2 push. ARGV: 1 config id, 2 JSON.
/// Returns 0 when the task does not exist.
pub static SET_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'push', '1')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"#,
    )
});

/// Deletes a push config. KEYS: 1 task, 2 push. ARGV: 1 config id.
/// Returns -1 when the task does not exist, else how many were deleted.
pub static DELETE_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HDEL', KEYS[2], ARGV[1])
"#,
    )
});

/// Deletes tasks whose retention ended. KEYS: 1 expiry. ARGV: 1 now ms, 2 limit, 3 key base
/// (`{prefix}`). Returns how many.
pub static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[3] .. ':task:' .. id, ARGV[3] .. ':push:' .. id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"#,
    )
});

/// Queue statistics in one round trip. KEYS: 1 queue, 2 jobs, 3 dead letters, 4 stats.
/// ARGV: 1 consumer group. Returns {jobs, running, dead letters, oldest waiting entry id or "",
/// stats hash as a flat list}.
pub static STATS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local running, last = 0, '0-0'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
  if fields['name'] == ARGV[1] then
    running = fields['pending']
    last = fields['last-delivered-id']
  end
end
local oldest = ''
local waiting = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
if #waiting > 0 then oldest = waiting[1][1] end
return {redis.call('HLEN', KEYS[2]), running, redis.call('XLEN', KEYS[3]), oldest, redis.call('HGETALL', KEYS[4])}
"#,
    )
});

/// Creates or replaces an app, keeping names unique.
/// KEYS: 1 apps, 2 app names. ARGV: 1 id, 2 name, 3 app JSON, 4 tenancy channel.
/// Returns 1, or 0 when another app has the name.
pub static PUT_APP: LazyLock<Publishing> = LazyLock::new(|| {
    Publishing::new(
        r#"
local owner = redis.call('HGET', KEYS[2], ARGV[2])
if owner and owner ~= ARGV[1] then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local old_name = cjson.decode(old)['name']
  if old_name ~= ARGV[2] then redis.call('HDEL', KEYS[2], old_name) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('PUBLISH', ARGV[4], 'apps')
return 1
"#,
    )
});

/// Removes an app and its name. KEYS: 1 apps, 2 app names. ARGV: 1 id, 2 tenancy channel.
/// Returns 1, or 0 when there was no such app.
pub static DELETE_APP: LazyLock<Publishing> = LazyLock::new(|| {
    Publishing::new(
        r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HDEL', KEYS[2], cjson.decode(old)['name'])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'apps')
return 1
"#,
    )
});

/// Adds a signing key. KEYS: 1 signing keys. ARGV: 1 kid, 2 key JSON, 3 "1" = only when there
/// is no key yet, 4 tenancy channel. Returns every key JSON.
pub static ADD_KEY: LazyLock<Publishing> = LazyLock::new(|| {
    Publishing::new(
        r#"
if ARGV[3] ~= '1' or redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PUBLISH', ARGV[4], 'keys')
end
return redis.call('HVALS', KEYS[1])
"#,
    )
});

/// Counts one request in each fixed window. KEYS: one counter per limit (the window start is
/// part of the name). ARGV: each key's window length in ms. Returns each count.
pub static RATE_HIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local counts = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[i]) end
  counts[i] = n
end
return counts
"#,
    )
});

/// Removes a terminal task with its log and push configs. KEYS: 1 task (with its log), 2 push,
/// 3 expiry. ARGV: 1 task id. Returns 1, 0 when there is no such task, -1 when it is not
/// terminal.
pub static REMOVE_TASK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local data = redis.call('HGET', KEYS[1], 'data')
if not data then return 0 end
local state = cjson.decode(data)['task']['status']['state']
if state ~= 'completed' and state ~= 'canceled' and state ~= 'failed' and state ~= 'rejected' then
  return -1
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"#,
    )
});

/// Removes a session from the index. KEYS: 1 session, 2 app sessions, 3 the session's tasks as
/// indexed before they moved into its hash (a sorted set). ARGV: 1 session id, 2 user sessions
/// key prefix, 3 "1" = only when it has no task indexed.
/// Returns 1, or 0 when there is no such session or it is not empty.
pub static FORGET_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local user = redis.call('HGET', KEYS[1], 'user')
if not user then return 0 end
-- Fields user, created and position, then one per task.
if ARGV[3] == '1' and (redis.call('HLEN', KEYS[1]) > 3 or redis.call('ZCARD', KEYS[3]) > 0) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', ARGV[2] .. user, ARGV[1])
redis.call('DEL', KEYS[1], KEYS[3])
return 1
"#,
    )
});

/// Records a request in a capture session unless it is missing, expired or full. The event is
/// the request's JSON with the number and the answered status written in front.
/// KEYS: 1 session, 2 events. ARGV: 1 now ms, 2 the request JSON without its opening brace,
/// 3 live channel. Returns {"ok", event JSON, session fields and values...}, {"missing"},
/// {"expired", expiry ms} or {"full", limit}.
pub static CAPTURE_RECORD: LazyLock<Publishing> = LazyLock::new(|| {
    Publishing::new(
        r#"
local s = redis.call('HMGET', KEYS[1], 'expires', 'limit', 'count', 'status')
if not s[1] then return {'missing'} end
local expires = tonumber(s[1])
if expires > 0 and expires <= tonumber(ARGV[1]) then return {'expired', s[1]} end
local limit = tonumber(s[2])
if limit > 0 and tonumber(s[3]) >= limit then return {'full', s[2]} end
local seq = redis.call('HINCRBY', KEYS[1], 'count', 1)
local event = '{"seq":' .. seq .. ',"status":' .. s[4] .. ',' .. ARGV[2]
redis.call('ZADD', KEYS[2], seq, event)
if expires > 0 then redis.call('PEXPIREAT', KEYS[2], expires) end
redis.call('PUBLISH', ARGV[3], event)
local out = {'ok', event}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
return out
"#,
    )
});

/// Changes a capture session's settings unless it is missing or expired; a claim (ARGV[2] an
/// app id) also makes it permanent, unless another app claimed it first.
/// KEYS: 1 session, 2 events. ARGV: 1 now ms, 2 claiming app or "", 3... field/value pairs.
/// Returns "ok", "missing", "expired:<ms>" or "taken:<app>".
pub static CAPTURE_UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local s = redis.call('HMGET', KEYS[1], 'expires', 'app')
if not s[1] then return 'missing' end
local expires = tonumber(s[1])
if expires > 0 and expires <= tonumber(ARGV[1]) then return 'expired:' .. s[1] end
if ARGV[2] ~= '' then
  if s[2] and s[2] ~= '' and s[2] ~= ARGV[2] then return 'taken:' .. s[2] end
  redis.call('HSET', KEYS[1], 'app', ARGV[2], 'expires', 0, 'limit', 0)
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
return 'ok'
"#,
    )
});

/// Leases the pending deliveries due by ARGV[1]: up to ARGV[3] of them move to ARGV[1] +
/// ARGV[2] in the due set, so no other instance takes them meanwhile.
/// KEYS: 1 due set, 2 deliveries. Returns the Delivery JSON of each.
pub static TAKE_DUE_DELIVERIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
local leased = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[2], id)
  if record then
    redis.call('ZADD', KEYS[1], leased, id)
    out[#out + 1] = record
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"#,
    )
});

/// Renews this instance's leases: resets the idle time of each entry it still owns in the
/// consumer group, and leaves alone (and reports) the ones another instance's reaper took.
/// KEYS: 1 queue. ARGV: 1 group, 2 this consumer, 3... entry ids. Returns the lost entry ids.
pub static RENEW_LEASES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local lost = {}
for i = 3, #ARGV do
  local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #owned > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"#,
    )
});
