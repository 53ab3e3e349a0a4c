#!lua name=__LIBRARY__
-- The guard of the workers' profile writes (tailor/core/profile/store.py).
--
-- A worker counts events into its own in-memory copy of a user's profile and writes back the fields
-- that changed. This function makes each user's write atomic and safe:
--   * the profile's version must still be the one the worker read or last wrote, or the write is
--     refused: a worker that lost the user's partition in a rebalance (a zombie) cannot overwrite what
--     the new owner wrote since;
--   * none of the events may be marked counted already, or the write is refused: an event is counted
--     once however often it is delivered;
--   * then, in one step, the changed fields, the new version and the events' marks are set.
-- A refused user is reloaded by the worker and counted again from what Redis holds.
--
-- One hash per user holds it all: the profile's fields (c, w, b), its version, and the dedup marks
-- ('#' + event id -> when counted), so the guard is two calls, one HMGET and one HSET (and an HLEN
-- when the marks' cap is checked). Every redis.call has a cost and every argument is copied into Lua, so nothing here parses or
-- builds a value; a hash, not a sorted set, keeps the marks, because a ZADD into a small sorted set scans and
-- parses every score, a cost that grows with the marks (measured: docs/pipeline.md).
--
--   KEYS: the first user's profile, and only it: a Redis Cluster routes the call by it, and refuses a
--         call whose declared keys are in different slots (CROSSSLOT). The users' profiles are in
--         ARGV; the function's flag 'allow-cross-slot-keys' lets one call write the users of every
--         slot its node serves (the worker sends one call per node, tailor.core.profile.wires).
--   ARGV: now, the profile's TTL (s), drop marks counted before this, start a pass that drops them
--         only if the last one ended no later than this, the most marks a user may hold, the hash
--         entries one pruning step may visit,
--         then for each user: its profile, expected version ('' for none), new version, flags ('d': check the
--         marks, 'p': prune: renew the TTL and drop old marks when due, 'x': give the TTL, 'c': check
--         the marks' cap),
--         n_fields, (field, value) * n_fields, n_marks, mark * n_marks ('#' + event id)
--
-- The TTL is renewed only when a write prunes (at most once a minute per user; every new profile's
-- first write does), one prune interval longer than needed: the key still outlives what it must after
-- the last write, and a call per write is saved.
--
-- Old marks are dropped in passes over the hash, a bounded step per pruning write (HSCAN from the
-- cursor kept in ' cursor', at most the step's entries visited): no call ever reads a user's whole
-- hash, however many marks an abusive user id has piled up. A pass starts when the last one ended
-- long enough ago (tailor.core.profile.state.Plan.marks_prune_every) and goes on, a step per
-- pruning write, until its cursor comes back to 0.
--
-- A user's marks are capped: a write that would take the hash past the cap writes nothing (and
-- still takes its pruning step, so the user comes back under the cap as its marks age out). The
-- worker asks for the check ('c') on a user's first write after loading it and then every few dozen
-- marks, so the cap holds within that many and a shopper's write costs no HLEN.
--   returns for each user: 1 written; 0 the version changed (nothing written); 2 over the marks cap
--           (nothing written); 3 its profile is not this node's (a Redis Cluster's slot moved, or is
--           migrating and the profile already left; nothing written: the worker sends the user again
--           on its own, where MOVED and ASK route it); or the 1-based positions of the events counted
--           already (nothing written)
--
-- A user's first command is its HMGET, through pcall: on a Redis Cluster a key of a slot this node does
-- not serve is refused there ("non local key"), before anything of that user is written, so the other
-- users of the call are written and that one is answered 3. Any other error ends the call, as it would
-- for a single user.

local VERSION = ' version' -- marks start with '#', the profile's fields are single letters
local PRUNED = ' pruned'
local CURSOR = ' cursor' -- the pass of dropping old marks under way ('0' or absent: none)
local RESERVED = 6 -- fields that are not marks: w, c, b, version, pruned, cursor
local CHUNK = 1000 -- arguments per redis.call: well under Lua's stack limit

-- The version, when the last pass of dropping marks ended, its cursor, then each mark (false when absent), in as few calls as
-- the stack allows.
-- nil when the profile is not this node's (a Redis Cluster's slot is served elsewhere).
local function marks_of(profile, args, first, n)
  local marks
  if n == 0 then
    marks = redis.pcall('HMGET', profile, VERSION, PRUNED, CURSOR)
  else
    marks = redis.pcall('HMGET', profile, VERSION, PRUNED, CURSOR, unpack(args, first, math.min(first + n - 1, first + CHUNK - 1)))
  end
  if marks.err then
    if string.find(marks.err, 'non local key', 1, true) then return nil end
    error(marks)
  end
  if n <= CHUNK then return marks end
  local last = first + n - 1
  local from = first + CHUNK
  while from <= last do
    local to = math.min(last, from + CHUNK - 1)
    for _, mark in ipairs(redis.call('HMGET', profile, unpack(args, from, to))) do
      marks[#marks + 1] = mark
    end
    from = to + 1
  end
  return marks
end

-- One step of a pass: visit about `count` entries from `cursor`, drop the marks counted before
-- `before`; the cursor to go on from ('0': the pass is over).
local function drop_marks_step(profile, cursor, before, count)
  local reply = redis.call('HSCAN', profile, cursor, 'COUNT', count)
  local entries = reply[2]
  local old = {}
  for i = 1, #entries, 2 do
    if string.byte(entries[i]) == 35 and tonumber(entries[i + 1]) < before then -- 35: '#'
      old[#old + 1] = entries[i]
      if #old >= CHUNK then
        redis.call('HDEL', profile, unpack(old))
        old = {}
      end
    end
  end
  if #old > 0 then redis.call('HDEL', profile, unpack(old)) end
  return reply[1]
end

local function write(keys, args)
  local now, ttl = args[1], args[2]
  local drop_before, dropped_due = tonumber(args[3]), tonumber(args[4])
  local max_marks, step = tonumber(args[5]), tonumber(args[6])
  local result = {}
  local a = 7
  while a <= #args do
    local profile, expected, version, flags = args[a], args[a + 1], args[a + 2], args[a + 3]
    local n_fields = tonumber(args[a + 4])
    local fields = a + 5
    local n = tonumber(args[fields + 2 * n_fields])
    local ids = fields + 2 * n_fields + 1
    a = ids + n

    local check = string.find(flags, 'd', 1, true)
    local marks = marks_of(profile, args, ids, check and n or 0)
    if not marks then
      result[#result + 1] = 3
    elseif (marks[1] or '') ~= expected then
      result[#result + 1] = 0
    else
      local counted = {}
      if check then
        for i = 1, n do
          if marks[i + 3] then counted[#counted + 1] = i end
        end
      end
      if #counted > 0 then
        result[#result + 1] = counted
      else
        local over = n > 0 and string.find(flags, 'c', 1, true)
          and redis.call('HLEN', profile) + n > max_marks + RESERVED
        local set = {}
        local prunes = string.find(flags, 'p', 1, true)
        local cursor = marks[3] or '0'
        if prunes and (cursor ~= '0' or tonumber(marks[2] or '0') <= dropped_due) then
          cursor = drop_marks_step(profile, cursor, drop_before, step)
          set[#set + 1] = CURSOR
          set[#set + 1] = cursor
          if cursor == '0' then
            set[#set + 1] = PRUNED
            set[#set + 1] = now
          end
        end
        if over then
          if #set > 0 then redis.call('HSET', profile, unpack(set)) end
          result[#result + 1] = 2
        else
          set[#set + 1] = VERSION
          set[#set + 1] = version
          for i = fields, fields + 2 * n_fields - 1 do set[#set + 1] = args[i] end
          for i = 0, n - 1 do
            set[#set + 1] = args[ids + i]
            set[#set + 1] = now
            if #set >= CHUNK then
              redis.call('HSET', profile, unpack(set))
              set = {}
            end
          end
          if #set > 0 then redis.call('HSET', profile, unpack(set)) end
          if prunes or string.find(flags, 'x', 1, true) then redis.call('EXPIRE', profile, ttl) end
          result[#result + 1] = 1
        end
      end
    end
  end
  return result
end

-- Several users per call touch several slots: allowed on one node (KEYS above).
redis.register_function{function_name = '__WRITE__', callback = write, flags = {'allow-cross-slot-keys'}}
