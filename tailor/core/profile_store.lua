#!lua name=__LIBRARY__
-- The guard of the workers' profile writes (tailor/core/profile_store.py).
--
-- A worker counts events into its own in-memory copy of a user's profile and writes back the fields
-- that changed. This function makes each user's write atomic and safe:
--   * the profile's version must still be the one the worker read or last wrote, or the write is
--     refused: a worker that lost the user's partition in a rebalance (a zombie) cannot overwrite what
--     the new owner wrote since;
--   * none of the events may be in the user's dedup record already, or the write is refused: an event
--     is counted once however often it is delivered;
--   * then, in one step, the changed fields are set and the events' ids join the dedup record.
-- A refused user is reloaded by the worker and counted again from what Redis holds.
--
-- Measured (docs/pipeline.md): each redis.call costs about a microsecond and each argument is copied
-- into Lua, so the version lives in the dedup record as a field beside the ids (one HMGET reads the
-- version and checks the ids, one HSET writes them), and nothing here parses or builds a value. The
-- record is a hash, not a sorted set: inserting into a small sorted set scans and parses every score
-- (ZADD cost 3-10 us per write and grew with the marks; HSET costs 0.6).
--
--   KEYS: for each user, its profile (hash) and its dedup record (hash: event id -> when counted,
--         ' version' -> the profile's version, ' pruned' -> when old marks were last dropped)
--   ARGV: now, profile TTL (s), dedup record TTL (s), drop marks counted before this, drop them only
--         if last dropped no later than this,
--         then for each user: expected version ('' for none), new version, flags ('d': check the ids,
--         'p': prune: renew both TTLs and drop old marks when due, 'x': renew the dedup record's TTL),
--         n_fields, (field, value) * n_fields, n_ids, id * n_ids
--
-- TTLs are renewed only when a write prunes (at most once a minute per user; every new profile's
-- first write does) or the dedup record is new, and are one prune interval longer than needed: every
-- key still outlives what it must after the last write, and two calls per write are saved. Dropping
-- old marks scans the whole record, so it is due more rarely still (tailor.core.profile_state.Plan).
--   returns for each user: 1 written; 0 the version changed (nothing written);
--           or the 1-based positions of the ids counted already (nothing written)

local VERSION = ' version' -- event ids are printable ASCII without spaces: never these
local PRUNED = ' pruned'
local CHUNK = 1000 -- arguments per redis.call: well under Lua's stack limit

-- The version, when marks were last dropped, then each id's mark (false when absent), in as few calls
-- as the stack allows.
local function marks_of(dedup, args, first, n)
  if n == 0 then return redis.call('HMGET', dedup, VERSION, PRUNED) end
  local last = first + n - 1
  local marks = redis.call('HMGET', dedup, VERSION, PRUNED, unpack(args, first, math.min(last, first + CHUNK - 1)))
  local from = first + CHUNK
  while from <= last do
    local to = math.min(last, from + CHUNK - 1)
    for _, mark in ipairs(redis.call('HMGET', dedup, unpack(args, from, to))) do
      marks[#marks + 1] = mark
    end
    from = to + 1
  end
  return marks
end

local function drop_marks_before(dedup, before)
  local all = redis.call('HGETALL', dedup)
  local old = {}
  for i = 1, #all, 2 do
    if all[i] ~= VERSION and all[i] ~= PRUNED and tonumber(all[i + 1]) < before then
      old[#old + 1] = all[i]
      if #old >= CHUNK then
        redis.call('HDEL', dedup, unpack(old))
        old = {}
      end
    end
  end
  if #old > 0 then redis.call('HDEL', dedup, unpack(old)) end
end

local function write(keys, args)
  local now, ttl, dedup_ttl = args[1], args[2], args[3]
  local drop_before, dropped_due = tonumber(args[4]), tonumber(args[5])
  local result = {}
  local a = 6
  for u = 1, #keys, 2 do
    local profile, dedup = keys[u], keys[u + 1]
    local expected, version, flags = args[a], args[a + 1], args[a + 2]
    local n_fields = tonumber(args[a + 3])
    local fields = a + 4
    local n = tonumber(args[fields + 2 * n_fields])
    local ids = fields + 2 * n_fields + 1
    a = ids + n

    local check = string.find(flags, 'd', 1, true)
    local marks = marks_of(dedup, args, ids, check and n or 0)
    if (marks[1] or '') ~= expected then
      result[#result + 1] = 0
    else
      local counted = {}
      if check then
        for i = 1, n do
          if marks[i + 2] then counted[#counted + 1] = i end
        end
      end
      if #counted > 0 then
        result[#result + 1] = counted
      else
        if n_fields > 0 then redis.call('HSET', profile, unpack(args, fields, fields + 2 * n_fields - 1)) end
        local members = {VERSION, version}
        for i = 0, n - 1 do
          members[#members + 1] = args[ids + i]
          members[#members + 1] = now
          if #members >= CHUNK then
            redis.call('HSET', dedup, unpack(members))
            members = {}
          end
        end
        local prunes = string.find(flags, 'p', 1, true)
        if prunes and tonumber(marks[2] or '0') <= dropped_due then
          drop_marks_before(dedup, drop_before)
          members[#members + 1] = PRUNED
          members[#members + 1] = now
        end
        if #members > 0 then redis.call('HSET', dedup, unpack(members)) end
        if prunes then
          redis.call('EXPIRE', dedup, dedup_ttl)
          redis.call('EXPIRE', profile, ttl)
        elseif string.find(flags, 'x', 1, true) then
          redis.call('EXPIRE', dedup, dedup_ttl)
        end
        result[#result + 1] = 1
      end
    end
  end
  return result
end

-- Several users per call touch several slots: allowed on one node; on Redis Cluster, call per node.
redis.register_function{function_name = '__WRITE__', callback = write, flags = {'allow-cross-slot-keys'}}
