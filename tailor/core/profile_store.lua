#!lua name=__LIBRARY__
-- Per-user profile state: the write side (workers) and the read side (content API).
--
-- Every key of one user starts with `tailor:<ns>/<name>:{<user>}:`, so the user is the Redis Cluster
-- hash tag and all of a user's keys live in one slot:
--
--   <prefix>p     hash, the user's profile, values are MessagePack:
--      b<size>:<start>   {counter = n} for the bucket of `size` seconds starting at `start`
--      m                 {r = {dimension = {value, at, value, at, ...}}, newest first, recent_limit values
--                         s = {session = {page views, events, started at, last seen}},
--                         p = when stale buckets and ended sessions are next pruned}
--   <prefix>seen  sorted set: event id -> when it was first counted (worker clock); the dedup record
--
-- Measured on this machine (docs/pipeline.md): what costs is creating keys and (de)serializing
-- values, so a write touches one field per bucket size plus one meta field, MessagePack is about
-- twice as fast as JSON in Redis's Lua, and dedup is one sorted-set member instead of one key.

local function unpack_or(raw, default)
  if raw then return cmsgpack.unpack(raw) end
  return default
end

-- Dedup and count one user's events (see write below).
local function write_user(config, profile, prefix, events)
  local now, sizes, keeps = config.now, config.sizes, config.keeps
  local seen = prefix .. 'seen'

  -- Dedup first; only new events go on. The marks and the counts below commit together.
  -- An event older than the dedup TTL is not counted at all: its mark, if it was counted before,
  -- may be gone already, and counting it again would count it twice (replays long after).
  local fresh, expired = {}, 0
  local oldest = now - config.dedup_ttl
  for _, e in ipairs(events) do
    if e[2] <= oldest then
      expired = expired + 1
    elseif redis.call('ZADD', seen, 'NX', now, e[1]) == 1 then
      fresh[#fresh + 1] = e
    end
  end
  local duplicates = #events - #fresh - expired
  if #fresh == 0 then return 0, duplicates, expired end

  -- The bucket fields these events fall in (those not expired already), plus the meta field;
  -- each event's field names are made once and kept beside it.
  local names, index = {'m'}, {m = 1}
  local fields_of = {}
  for n, e in ipairs(fresh) do
    local mine = {}
    for i, size in ipairs(sizes) do
      local start = math.floor(e[2] / size) * size
      if start + keeps[size] > now then
        local name = 'b' .. size .. ':' .. start
        mine[#mine + 1] = name
        if not index[name] then
          names[#names + 1] = name
          index[name] = #names
        end
      end
    end
    fields_of[n] = mine
  end
  local current = redis.call('HMGET', profile, unpack(names))
  local meta = unpack_or(current[1], {r = {}, s = {}, p = 0})
  local buckets, counts = {}, {}
  for i = 2, #names do buckets[names[i]] = unpack_or(current[i], {}) end

  local max_fields, recent_limit = config.max_fields, 2 * config.recent_limit
  for n, e in ipairs(fresh) do
    local at, counter, session = e[2], e[3], e[4]
    for _, name in ipairs(fields_of[n]) do
      local bucket = buckets[name]
      bucket[counter] = (bucket[counter] or 0) + 1
      for j = 5, #e, 2 do
        local field = counter .. '|' .. e[j] .. '|' .. e[j + 1]
        if bucket[field] then
          bucket[field] = bucket[field] + 1
        else
          -- Totals always count; a new dimension value only while the bucket has room, so one
          -- user with endless distinct values cannot grow memory without bound.
          local size = counts[name]
          if not size then
            size = 0
            for _ in pairs(bucket) do size = size + 1 end
          end
          if size < max_fields then
            bucket[field] = 1
            size = size + 1
          end
          counts[name] = size
        end
      end
    end
    -- Recent values of a dimension: one flat array {value, at, value, at, ...}, newest first by
    -- event time (a late event lands behind newer ones), each value once.
    for j = 5, #e, 2 do
      local list = meta.r[e[j]]
      if not list then
        list = {}
        meta.r[e[j]] = list
      end
      local value, newer = e[j + 1], false
      for k = #list - 1, 1, -2 do
        if list[k] == value then
          if list[k + 1] >= at then
            newer = true
          else
            table.remove(list, k + 1)
            table.remove(list, k)
          end
        end
      end
      if not newer then
        local position = #list + 1
        for k = 1, #list - 1, 2 do
          if list[k + 1] < at then
            position = k
            break
          end
        end
        table.insert(list, position, at)
        table.insert(list, position, value)
        while #list > recent_limit do table.remove(list) end
      end
    end
    if session ~= '' then
      local s = meta.s[session]
      if not s then
        s = {0, 0, at, at}
        meta.s[session] = s
      end
      if counter == 'views' then s[1] = s[1] + 1 end
      s[2] = s[2] + 1
      if at < s[3] then s[3] = at end
      if at > s[4] then s[4] = at end
    end
  end

  -- Now and then (once per smallest bucket, at most once a minute) drop buckets no window reads any
  -- more, ended sessions and dedup marks past their TTL; in between they cost memory only (reads
  -- skip them by their start time), and key TTLs bound it all.
  local prune = now >= meta.p
  if prune then
    meta.p = math.floor(now + config.prune_every)
    for id, s in pairs(meta.s) do
      if s[4] + config.session_ttl <= now then meta.s[id] = nil end
    end
  end
  local flat = {'m', cmsgpack.pack(meta)}
  for i = 2, #names do
    flat[#flat + 1] = names[i]
    flat[#flat + 1] = cmsgpack.pack(buckets[names[i]])
  end
  redis.call('HSET', profile, unpack(flat))
  if prune then
    local stale = {}
    for _, name in ipairs(redis.call('HKEYS', profile)) do
      if string.sub(name, 1, 1) == 'b' then
        local size, start = string.match(name, '^b(%d+):(%-?%d+)$')
        local keep = keeps[tonumber(size)]
        if not keep or tonumber(start) + keep <= now then stale[#stale + 1] = name end
      end
    end
    if #stale > 0 then redis.call('HDEL', profile, unpack(stale)) end
    redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. (now - config.dedup_ttl))
  end
  redis.call('EXPIRE', profile, config.ttl)
  redis.call('EXPIRE', seen, config.dedup_ttl)
  return #fresh, duplicates, expired
end

-- Write: dedup and count the events of one or more users in one atomic step, so that a worker dying
-- at any point leaves every event either counted and marked seen, or neither.
--   KEYS: the profile hash of each user
--   ARGV: now, dedup_ttl, recent_limit, session_ttl, max_fields, ttl, n_sizes, (size, keep) * n_sizes,
--         then for each user (key): events-json
--   events-json: [[id, at, counter, session or "", dim1, value1, dim2, value2, ...], ...]
--   returns {counted, duplicates, expired (older than the dedup TTL: not counted)}
local function write(keys, args)
  local n_sizes = tonumber(args[7])
  local config = {
    now = tonumber(args[1]),
    dedup_ttl = tonumber(args[2]),
    recent_limit = tonumber(args[3]),
    session_ttl = tonumber(args[4]),
    max_fields = tonumber(args[5]),
    ttl = args[6],
    sizes = {},
    keeps = {},
    prune_every = math.huge,
  }
  for i = 1, n_sizes do
    local size = tonumber(args[6 + 2 * i])
    config.sizes[i] = size
    config.keeps[size] = tonumber(args[7 + 2 * i])
    config.prune_every = math.min(config.prune_every, size)
  end
  -- A prune lists the hash's fields: at most once a minute per user, however small the buckets.
  config.prune_every = math.max(config.prune_every, 60)
  local first = 8 + 2 * n_sizes
  local counted, duplicates, expired = 0, 0, 0
  for u = 1, #keys do
    local profile = keys[u]
    -- The user's other keys share the profile key's prefix (it ends in 'p').
    local c, d, x = write_user(config, profile, string.sub(profile, 1, -2), cjson.decode(args[first + u - 1]))
    counted = counted + c
    duplicates = duplicates + d
    expired = expired + x
  end
  return {counted, duplicates, expired}
end

-- Read: the user's counters summed per window, recent values and one session, as compact JSON.
--   KEYS: the user's profile hash
--   ARGV: now, session or "", session_ttl, n_windows, (name, seconds, size) * n_windows
--   returns {"c": {window: {counter: n}}, "r": {dimension: [newest first]}, "s": [pv, ev, st, ls] | false}
local function read(keys, args)
  local now = tonumber(args[1])
  local session = args[2]
  local session_ttl = tonumber(args[3])
  local n_windows = tonumber(args[4])
  -- For each bucket size, the windows using it with the oldest and newest bucket start they sum.
  local by_size = {}
  local counts = {}
  for w = 1, n_windows do
    local name = args[2 + 3 * w]
    local seconds = tonumber(args[3 + 3 * w])
    local size = tonumber(args[4 + 3 * w])
    local current = math.floor(now / size) * size
    local list = by_size[size]
    if not list then
      list = {}
      by_size[size] = list
    end
    local sums = {}
    list[#list + 1] = {current - (math.ceil(seconds / size) - 1) * size, current, sums}
    counts[name] = sums
  end

  local recent = {}
  local stats = false
  local flat = redis.call('HGETALL', keys[1])
  for i = 1, #flat, 2 do
    local name = flat[i]
    if string.sub(name, 1, 1) == 'b' then
      local size, start = string.match(name, '^b(%d+):(%-?%d+)$')
      local windows = by_size[tonumber(size)]
      if windows then
        start = tonumber(start)
        local bucket = nil
        for _, window in ipairs(windows) do
          if start >= window[1] and start <= window[2] then
            bucket = bucket or cmsgpack.unpack(flat[i + 1])
            local sums = window[3]
            for counter, n in pairs(bucket) do sums[counter] = (sums[counter] or 0) + n end
          end
        end
      end
    elseif name == 'm' then
      local meta = cmsgpack.unpack(flat[i + 1])
      for dimension, list in pairs(meta.r) do
        local values = {}
        for k = 1, #list - 1, 2 do values[#values + 1] = list[k] end
        recent[dimension] = values
      end
      local s = session ~= '' and meta.s[session]
      if s and s[4] + session_ttl > now then stats = s end
    end
  end
  return cjson.encode({c = counts, r = recent, s = stats})
end

-- Several users per call touch several slots: allowed on one node; a Cluster client groups by node.
redis.register_function{function_name = '__WRITE__', callback = write, flags = {'allow-cross-slot-keys'}}
redis.register_function{function_name = '__READ__', callback = read, flags = {'no-writes'}}
