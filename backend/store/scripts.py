"""Every Lua script of the service, in one place (RQ's ``scripts.py`` is the
model), each with its KEYS and ARGV documented.  State names, key shapes,
error codes and limits are injected from their one definition
(funcx/protocol/states.py, keys.py, error_codes.py, funcx/defaults.py), never
written out here; :func:`_lua` refuses a script with a placeholder left over.
"""
from __future__ import annotations

import re

from funcx.defaults import setting
from funcx.protocol import error_codes, keys
from funcx.protocol.states import TERMINAL_VALUES, TaskState


def _split(key: str) -> tuple[str, str]:
    """A key's fixed text before and after its variable part."""
    before, after = key.split("\0")
    return before, after


_EV_PREFIX, _EV_SUFFIX = _split(keys.task_group_events("\0"))
_USER_PREFIX, _QUEUED_SUFFIX = _split(keys.user_queued("\0"))
_BYTES_SUFFIX = keys.user_queued_bytes("\0").split("\0")[1][len(_QUEUED_SUFFIX):]
_CANCELLED_PREFIX, _CANCELLED_SUFFIX = _split(keys.ep_cancelled("\0"))
assert keys.user_queued_bytes("U") == keys.user_queued("U") + _BYTES_SUFFIX

VALUES: dict[str, object] = {
    "terminal": "{" + ", ".join(f"['{s}'] = true" for s in sorted(TERMINAL_VALUES)) + "}",
    "CANCELLED": TaskState.CANCELLED.value,
    "ev_prefix": _EV_PREFIX, "ev_suffix": _EV_SUFFIX,
    "cancelled_prefix": _CANCELLED_PREFIX, "cancelled_suffix": _CANCELLED_SUFFIX,
    "user_prefix": _USER_PREFIX, "queued_suffix": _QUEUED_SUFFIX, "bytes_suffix": _BYTES_SUFFIX,
    "events_maxlen": int(setting("EVENTS_MAXLEN")),
    "task_ttl": int(setting("TASK_TTL_S")),
    "STORE_FULL": error_codes.STORE_FULL,
    "ENDPOINT_NOT_FOUND": error_codes.ENDPOINT_NOT_FOUND,
    "GROUP_TAKEN": "TASK_GROUP_TAKEN",  # SUBMIT's internal answer (quotas.GroupTaken), never sent
    "QUOTA_QUEUED_TASKS": error_codes.QUOTA_QUEUED_TASKS,
    "QUOTA_STORED_BYTES": error_codes.QUOTA_STORED_BYTES,
}


GROUP_TAKEN = str(VALUES["GROUP_TAKEN"])


def _lua(text: str) -> str:
    out = re.sub(r"\{\{(\w+)\}\}", lambda m: str(VALUES[m.group(1)]), text)
    assert "{{" not in out, "a placeholder was left in a Lua script"
    return out


#: A Lua function to prepend to a script: ``fx_release(task_key, task_id)`` takes a
#: task that just became terminal (or was cancelled) off its owner's quotas.  It
#: reads ``owner`` and ``payload_bytes`` from the task record; a task queued before
#: quotas existed (no ``payload_bytes``) or already released is left alone, so the
#: call is idempotent (keys: keys.user_queued / user_queued_bytes).
RELEASE = _lua("""
local function fx_release(task_key, tid)
  local rec = redis.call('HMGET', task_key, 'owner', 'payload_bytes')
  if rec[1] and rec[2] then
    local base = '{{user_prefix}}' .. rec[1] .. '{{queued_suffix}}'
    if redis.call('ZREM', base, tid .. ':' .. rec[2]) == 1 then
      if redis.call('DECRBY', base .. '{{bytes_suffix}}', rec[2]) < 0 then
        redis.call('SET', base .. '{{bytes_suffix}}', 0)
      end
    end
  end
end
""")

#: The whole of one submit request, atomically (backend/store/quotas.py builds it).
#: KEYS: [1] the owner's queued set, [2] the owner's queued-bytes counter, [3] the
#: Idempotency-Key answer key.  ARGV[1]: a JSON header (see quotas._header);
#: ARGV[2..]: bulk strings the header points at by index (stream entry fields,
#: function code, container specs).  Returns {1} queued, {2, answer} a replayed
#: request (nothing queued), or {0, code, detail} refused with nothing written.
SUBMIT = _lua("""
local h = cjson.decode(ARGV[1])
if h.answer_ttl > 0 then
  local first = redis.call('GET', KEYS[3])
  if first then return {2, first} end
end
-- Redis checks maxmemory only before a script's first write: make that first
-- write one that is refused on OOM, so a full store refuses before anything changes
local probe = redis.pcall('INCRBY', KEYS[2], 0)
if type(probe) == 'table' and probe.err then return {0, '{{STORE_FULL}}', probe.err} end
-- an endpoint deleted since the route looked it up: refuse (its streams stay gone)
for _, b in ipairs(h.batches) do
  if redis.call('EXISTS', b.ep_key) == 0 then return {0, '{{ENDPOINT_NOT_FOUND}}', b.eid} end
end
local o = redis.call('HGET', h.tg_key, 'owner')
if o and o ~= h.owner then return {0, '{{GROUP_TAKEN}}', ''} end
-- tasks whose records expired before finishing no longer count
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', h.now)
if #gone > 0 then
  local b = 0
  for _, m in ipairs(gone) do b = b + tonumber(string.match(m, ':(%d+)$') or '0') end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', h.now)
  if redis.call('DECRBY', KEYS[2], b) < 0 then redis.call('SET', KEYS[2], 0) end
end
local queued = redis.call('ZCARD', KEYS[1])
if queued + h.n > h.max_tasks then return {0, '{{QUOTA_QUEUED_TASKS}}', tostring(queued)} end
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
if held + h.nbytes > h.max_bytes then return {0, '{{QUOTA_STORED_BYTES}}', tostring(held)} end
-- queue
redis.call('HSETNX', h.tg_key, 'owner', h.owner)
redis.call('HSETNX', h.tg_key, 'created_at', h.now_s)
if h.client_tg ~= h.tg then redis.call('HSETNX', h.tg_key, 'client_id', h.client_tg) end
redis.call('ZADD', h.user_tgs_key, h.now, h.tg)
for _, fc in ipairs(h.codes) do redis.call('SET', fc[1], ARGV[fc[2]], 'NX') end
for _, cs in ipairs(h.containers) do redis.call('SET', cs[1], ARGV[cs[2]]) end
local expires = h.now + h.ttl
local all, queued_set = {}, {}
local aliased = h.client_tg ~= h.tg
for _, b in ipairs(h.batches) do
  for _, t in ipairs(b.tasks) do
    local tid, bytes = t[1], t[3]
    local k = h.task_prefix .. tid
    if aliased then
      redis.call('HSET', k, 'task_id', tid, 'status', h.status, 'function_id', b.fids[t[2]],
                 'endpoint_id', b.eid, 'task_group_id', h.tg, 'owner', h.owner,
                 'created_at', h.now_s, 'payload_bytes', bytes,
                 'client_task_group_id', h.client_tg)
    else
      redis.call('HSET', k, 'task_id', tid, 'status', h.status, 'function_id', b.fids[t[2]],
                 'endpoint_id', b.eid, 'task_group_id', h.tg, 'owner', h.owner,
                 'created_at', h.now_s, 'payload_bytes', bytes)
    end
    redis.call('EXPIRE', k, h.ttl)
    queued_set[#queued_set + 1] = expires
    queued_set[#queued_set + 1] = tid .. ':' .. bytes
    all[#all + 1] = tid
  end
  local entry = {}
  for i = b.entry, b.entry + 2 * b.nf - 1 do entry[#entry + 1] = ARGV[i] end
  redis.call('XADD', b.stream, '*', unpack(entry))
  redis.call('INCRBY', b.outstanding, #b.tasks)
end
redis.call('INCRBY', KEYS[2], h.nbytes)
for i = 1, #queued_set, 1000 do
  redis.call('ZADD', KEYS[1], unpack(queued_set, i, math.min(i + 999, #queued_set)))
end
for i = 1, #all, 1000 do
  redis.call('RPUSH', h.tg_tasks_key, unpack(all, i, math.min(i + 999, #all)))
end
for _, k in ipairs({h.tg_key, h.tg_tasks_key, h.tg_events_key}) do redis.call('EXPIRE', k, h.ttl) end
if h.answer_ttl > 0 then redis.call('SET', KEYS[3], h.answer, 'EX', h.answer_ttl) end
return {1}
""")

#: Cancel a task that is not finished, wherever it is (queued at the service, at
#: the endpoint, or running: the endpoint's agent sees the id in its cancelled set
#: and has the task's worker killed).  KEYS: the task record, its group's events,
#: the endpoint's cancelled set, the endpoint's outstanding counter.  ARGV:
#: task_id, now, then the statuses a task may be cancelled from.  Returns 1
#: cancelled, 0 not (it finished), -1 no such task.  The task is terminal at once
#: (one completion event); a late result from its killed run is refused by
#: APPLY_RESULTS like any second result (which also takes the id out of the
#: cancelled set).  A cancelled task leaves its quotas.
CANCEL = RELEASE + _lua("""
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
for i = 3, #ARGV do
  if cur == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', '{{CANCELLED}}', 'completion_t', ARGV[2],
               'reason', 'cancelled by the user (it was ' .. cur .. ')')
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', {{events_maxlen}}, '*',
               'task_id', ARGV[1], 'status', '{{CANCELLED}}')
    redis.call('SADD', KEYS[3], ARGV[1])
    redis.call('EXPIRE', KEYS[3], {{task_ttl}})
    redis.call('DECR', KEYS[4])
    fx_release(KEYS[1], ARGV[1])
    return 1
  end
end
return 0
""")

#: Read task records, and start the retention clock of terminal ones on their
#: first fetch by their owner, in one round trip.  KEYS: task records.  ARGV: now,
#: retention seconds, the reader's user id.  Returns each record as a flat list.
FETCH = _lua("""
local terminal = {{terminal}}
local out = {}
for i, k in ipairs(KEYS) do
  local rec = redis.call('HGETALL', k)
  out[i] = rec
  local st, owner, fetched = nil, nil, false
  for j = 1, #rec, 2 do
    local f = rec[j]
    if f == 'status' then st = rec[j + 1] elseif f == 'owner' then owner = rec[j + 1]
    elseif f == 'fetched_at' then fetched = true end
  end
  if owner == ARGV[3] and not fetched
     and terminal[st] then
    redis.call('HSET', k, 'fetched_at', ARGV[1])
    redis.call('EXPIRE', k, ARGV[2])
  end
end
return out
""")

#: Apply one endpoint's results (first terminal result wins; only tasks whose
#: record names this endpoint), if the applying ingester still holds the
#: endpoint's lease (backend/store/ingest_leases.py: a fence, so one endpoint's
#: results are applied by one ingester at a time).  KEYS[1]: the endpoint's
#: outstanding counter; KEYS[2]: the endpoint's ingest lease; KEYS[3..]: the task
#: records, one per result.  ARGV: endpoint id, the ingester's consumer name
#: ('': no fence, for the service's own failures), then per result: task_id,
#: status, field count, field/value pairs.  Returns {applied, {position,
#: reason}...}: position is the result's 1-based index, reason "unknown" (no such
#: task) or "foreign" (another endpoint's); or {-1, {}} with nothing written when
#: the lease is another's.  The task group of the completion event is read from
#: the record, never from the message.  Tasks that become terminal leave their
#: owners' quotas (as ``fx_release`` does, one ZMSCORE / ZREM / DECRBY per owner
#: and call instead of per task).  A result refused because its task was
#: cancelled meanwhile takes the id out of the endpoint's cancelled set (the
#: agent has finished with it; else the id would stay there, read by the agent's
#: cancellation check, until the set's TTL).
APPLY_RESULTS = _lua("""
local terminal = {{terminal}}
local eid, holder = ARGV[1], ARGV[2]
if holder ~= '' and redis.call('GET', KEYS[2]) ~= holder then return {-1, {}} end
local applied, a, refused = 0, 3, {}
local cancelled_key = '{{cancelled_prefix}}' .. eid .. '{{cancelled_suffix}}'
local freed, owners = {}, {}
for i = 3, #KEYS do
  local tid, status, nf = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local rec = redis.call('HMGET', KEYS[i], 'status', 'endpoint_id', 'task_group_id', 'owner',
                         'payload_bytes')
  local cur, ep, tg = rec[1], rec[2], rec[3]
  if not cur then
    refused[#refused + 1] = {i - 2, 'unknown'}
  elseif ep ~= eid then
    refused[#refused + 1] = {i - 2, 'foreign'}
  elseif not terminal[cur] then
    redis.call('HSET', KEYS[i], 'status', status, unpack(ARGV, a + 3, a + 2 + 2 * nf))
    if rec[4] and rec[5] then
      local f = freed[rec[4]]
      if not f then
        f = {m = {}, b = {}}
        freed[rec[4]] = f
        owners[#owners + 1] = rec[4]
      end
      f.m[#f.m + 1] = tid .. ':' .. rec[5]
      f.b[#f.b + 1] = tonumber(rec[5])
    end
    if tg and tg ~= '' then
      redis.call('XADD', '{{ev_prefix}}' .. tg .. '{{ev_suffix}}', 'MAXLEN', '~', {{events_maxlen}},
                 '*', 'task_id', tid, 'status', status)
    end
    applied = applied + 1
  elseif cur == '{{CANCELLED}}' then
    redis.call('SREM', cancelled_key, tid)
  end
  a = a + 3 + 2 * nf
end
-- the quotas: a task still in its owner's queued set leaves it, with its bytes
for _, o in ipairs(owners) do
  local base, f = '{{user_prefix}}' .. o .. '{{queued_suffix}}', freed[o]
  local there = redis.call('ZMSCORE', base, unpack(f.m))
  local gone, bytes = {}, 0
  for j = 1, #f.m do
    if there[j] then
      gone[#gone + 1] = f.m[j]
      bytes = bytes + f.b[j]
    end
  end
  if #gone > 0 then
    redis.call('ZREM', base, unpack(gone))
    if redis.call('DECRBY', base .. '{{bytes_suffix}}', bytes) < 0 then
      redis.call('SET', base .. '{{bytes_suffix}}', 0)
    end
  end
end
if applied > 0 then redis.call('DECRBY', KEYS[1], applied) end
return {applied, refused}
""")

#: Acknowledge and delete applied entries of an endpoint's results stream, if
#: the ingester still holds the endpoint's lease.  KEYS[1]: the endpoint's ingest
#: lease; KEYS[2]: its results stream.  ARGV: the ingester's consumer name ('':
#: no fence), the consumer group, then the entry ids.  Returns 1, or -1 (nothing
#: done) when the lease is another's: the entries stay pending for its holder.
ACK_RESULTS = _lua("""
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
for i = 3, #ARGV, 1000 do
  local j = math.min(i + 999, #ARGV)
  redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, i, j))
  redis.call('XDEL', KEYS[2], unpack(ARGV, i, j))
end
return 1
""")

#: Move tasks of one endpoint to a new non-terminal status, if the applying
#: ingester still holds the endpoint's lease (as APPLY_RESULTS).  KEYS[1]: the
#: endpoint's ingest lease; KEYS[2..]: task records.  ARGV: endpoint id, the
#: ingester's consumer name ('': no fence), the new status, then the statuses it
#: may replace.  Returns {changed, {position, reason}...} as APPLY_RESULTS does
#: ({-1, {}}: the lease is another's, nothing written).
APPLY_STATUS = _lua("""
local eid = ARGV[1]
if ARGV[2] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[2] then return {-1, {}} end
local allowed = {}
for i = 4, #ARGV do allowed[ARGV[i]] = true end
local n, refused = 0, {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local rec = redis.call('HMGET', k, 'status', 'endpoint_id')
  if not rec[1] then refused[#refused + 1] = {i - 1, 'unknown'}
  elseif rec[2] ~= eid then refused[#refused + 1] = {i - 1, 'foreign'}
  elseif allowed[rec[1]] then redis.call('HSET', k, 'status', ARGV[3]); n = n + 1 end
end
return {n, refused}
""")

#: Renew one ingester's membership of the live set (backend/store/ingest_leases.py).
#: KEYS[1]: the live set (member: consumer name, score: when it lapses, ms on
#: Redis's clock).  ARGV: the ingester's name, the lease in ms, then names of
#: ingesters known to be dead (removed).  Lapsed members are removed.  Returns the
#: live members.
INGEST_LIVE = _lua("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
""")

#: Take, renew or give up endpoints' ingest leases for one ingester.  KEYS[1]: the
#: live set; KEYS[2]: the set of registered endpoints; KEYS[3..]: the endpoints'
#: lease keys.  ARGV: the ingester's name, the lease in ms, then one flag per
#: lease key: '1' the endpoint is meant for this ingester (take it if free, renew
#: it if held), '0' it is not (give it up if held), then the endpoint id of each
#: lease key.  A lease whose holder is not in the live set (or has lapsed there)
#: is free; the lease of an endpoint no longer registered is never taken (so a
#: deleted endpoint leaves no lease behind).  Returns, per lease key, 1 held by
#: this ingester now, else 0.
INGEST_LEASES = _lua("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, ms = ARGV[1], ARGV[2]
local n = #KEYS - 2
local out = {}
for i = 1, n do
  local k, want = KEYS[2 + i], ARGV[2 + i] == '1'
  if want and redis.call('SISMEMBER', KEYS[2], ARGV[2 + n + i]) == 0 then want = false end
  local cur = redis.call('GET', k)
  if cur and cur ~= me then
    local until_ms = redis.call('ZSCORE', KEYS[1], cur)
    if not until_ms or tonumber(until_ms) < now then
      redis.call('DEL', k)
      cur = false
    end
  end
  if want and (not cur or cur == me) then
    redis.call('SET', k, me, 'PX', ms)
    out[i] = 1
  else
    if cur == me then redis.call('DEL', k) end
    out[i] = 0
  end
end
return out
""")

#: Take a long-poll slot.  KEYS[1]: the identity's open polls (a sorted set by
#: deadline).  ARGV: poll id, now, its deadline, the cap.  Returns 1 taken, 0 the
#: identity is at its cap.
LONGPOLL_ACQUIRE = _lua("""
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
""")

#: Look up a token and its user in one round trip.  KEYS[1]: the token's key.
#: ARGV[1]: the user-record key prefix.  Returns false (no such token) or
#: {user id, name, disabled, token created_at, tokens_valid_after}.
AUTHENTICATE = _lua("""
local tok = redis.call('HMGET', KEYS[1], 'user', 'created_at')
local uid = tok[1]
if not uid then return false end
local rec = redis.call('HMGET', ARGV[1] .. uid, 'name', 'disabled', 'tokens_valid_after')
return {uid, rec[1] or false, rec[2] or false, tok[2] or false, rec[3] or false}
""")

#: Move an endpoint's result blob out of its reach (the binary path,
#: backend/store/blobs.py).  KEYS: the task record, ep_blob(eid, tid),
#: task_blob(tid).  ARGV: endpoint id, the result limit in bytes.  Answers
#: {verdict, blob length}: ok (renamed, given the record's expiry), missing,
#: large (deleted), or unknown / foreign / terminal (the endpoint's blob is
#: deleted; the results script refuses or ignores the result itself).
SETTLE_BLOB = _lua("""
local terminal = {{terminal}}
local rec = redis.call('HMGET', KEYS[1], 'endpoint_id', 'status')
local verdict = nil
if not rec[1] then verdict = 'unknown'
elseif rec[1] ~= ARGV[1] then verdict = 'foreign'
elseif terminal[rec[2]] then verdict = 'terminal' end
if verdict then
  redis.call('DEL', KEYS[2])
  return {verdict, 0}
end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'missing', 0} end
local n = redis.call('STRLEN', KEYS[2])
if n - 3 > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return {'large', n}
end
redis.call('RENAME', KEYS[2], KEYS[3])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) else redis.call('PERSIST', KEYS[3]) end
return {'ok', n}
""")

#: A task's result blob gets its record's expiry (shortened to
#: RESULT_RETENTION_S on the first fetch).  KEYS: the task record,
#: task_blob(tid).  Answers whether the blob exists.
FOLLOW_BLOB = _lua("""
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return redis.call('EXISTS', KEYS[2])
""")
