#!lua name=__LIBRARY__
-- The guard of the workers' profile writes (tailor/core/profile_store.py).
--
-- A worker counts events into its own in-memory copy of a user's profile and writes back the fields
-- that changed. This function makes each user's write atomic and safe:
--   * the profile's version must still be the one the worker read or last wrote, or the write is
--     refused: a worker that lost the user's partition in a rebalance (a zombie) cannot overwrite what
--     the new owner wrote since;
--   * none of the events may be in the user's dedup set already, or the write is refused: an event is
--     counted once however often it is delivered;
--   * then, in one step, the changed fields are set and the events' ids join the dedup set.
-- A refused user is reloaded by the worker and counted again from what Redis holds.
--
-- Measured (docs/pipeline.md): each redis.call costs about a microsecond and each argument is copied
-- into Lua, so the version lives in the dedup set as a member scored with it (one ZMSCORE reads the
-- version and checks the ids), and nothing here parses or builds a value.
--
--   KEYS: for each user, its profile (hash) and its dedup set (sorted set: event id -> when counted,
--         and ' version' -> the profile's version)
--   ARGV: now, profile TTL (s), dedup set TTL (s), drop marks counted before this,
--         then for each user: expected version ('' for none), new version, flags ('d': check the ids,
--         'p': drop old marks and renew both TTLs, 'x': renew the dedup set's TTL),
--         n_fields, (field, value) * n_fields, n_ids, id * n_ids
--
-- TTLs are renewed only when a write prunes (at most once a minute per user; every new profile's
-- first write does) or the dedup set is new, and are one prune interval longer than needed: every key
-- still outlives what it must after the last write, and two calls per write are saved.
--   returns for each user: 1 written; 0 the version changed (nothing written);
--           or the 1-based positions of the ids counted already (nothing written)

local VERSION = ' version' -- event ids are printable ASCII without spaces: never this
local CHUNK = 1000 -- members per redis.call: well under Lua's stack limit

-- The version, then each id's score (false when absent), in as few calls as the stack allows.
local function scores_of(seen, args, first, n)
  local last = first + n - 1
  local scores = redis.call('ZMSCORE', seen, VERSION, unpack(args, first, math.min(last, first + CHUNK - 1)))
  local from = first + CHUNK
  while from <= last do
    local to = math.min(last, from + CHUNK - 1)
    for _, score in ipairs(redis.call('ZMSCORE', seen, unpack(args, from, to))) do
      scores[#scores + 1] = score
    end
    from = to + 1
  end
  return scores
end

local function write(keys, args)
  local now, ttl, seen_ttl, prune_before = args[1], args[2], args[3], args[4]
  local result = {}
  local a = 5
  for u = 1, #keys, 2 do
    local profile, seen = keys[u], keys[u + 1]
    local expected, version, flags = args[a], args[a + 1], args[a + 2]
    local n_fields = tonumber(args[a + 3])
    local fields = a + 4
    local n = tonumber(args[fields + 2 * n_fields])
    local ids = fields + 2 * n_fields + 1
    a = ids + n

    local check = n > 0 and string.find(flags, 'd', 1, true)
    local scores
    if check then
      scores = scores_of(seen, args, ids, n)
    else
      scores = redis.call('ZMSCORE', seen, VERSION)
    end
    if tonumber(scores[1] or '') ~= tonumber(expected) then
      result[#result + 1] = 0
    else
      local counted = {}
      if check then
        for i = 1, n do
          if scores[i + 1] then counted[#counted + 1] = i end
        end
      end
      if #counted > 0 then
        result[#result + 1] = counted
      else
        if n_fields > 0 then redis.call('HSET', profile, unpack(args, fields, fields + 2 * n_fields - 1)) end
        local members = {version, VERSION}
        for i = 0, n - 1 do
          members[#members + 1] = now
          members[#members + 1] = args[ids + i]
          if #members >= 2 * CHUNK then
            redis.call('ZADD', seen, unpack(members))
            members = {}
          end
        end
        if #members > 0 then redis.call('ZADD', seen, unpack(members)) end
        if string.find(flags, 'p', 1, true) then
          redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. prune_before)
          redis.call('EXPIRE', seen, seen_ttl)
          redis.call('EXPIRE', profile, ttl)
        elseif string.find(flags, 'x', 1, true) then
          redis.call('EXPIRE', seen, seen_ttl)
        end
        result[#result + 1] = 1
      end
    end
  end
  return result
end

-- Several users per call touch several slots: allowed on one node; on Redis Cluster, call per node.
redis.register_function{function_name = '__WRITE__', callback = write, flags = {'allow-cross-slot-keys'}}
