#!lua name=__LIBRARY__
-- Per-user profile state: the write side (workers) and the read side (content API).
--
-- Every key of one user starts with `tailor:<ns>/<name>:{<user>}:`, so the user is the Redis Cluster
-- hash tag and one call touches one slot. KEYS[1] is the user's profile hash:
--
--   <prefix>p            hash, all of the user's state, one field per item:
--      b<size>:<start>     {counter: n} of the bucket of `size` seconds starting at `start`
--      r:<dimension>       [[value, at], ...] the latest distinct values, newest first
--      s:<session>         [page views, events, started at, last seen]
--      @                   when the next prune of stale fields is due
--   <prefix>d:<event id> string with a TTL: the event was counted (the dedup record)
--
-- One hash per user, with small JSON values, is what makes this cheap: a write is a handful of
-- commands whatever the number of windows and dimensions, and a read is one HGETALL.

-- Dedup and count one user's events (see write below).
local function write_user(config, profile, prefix, events)
  local now, n_sizes, sizes, keeps = config.now, config.n_sizes, config.sizes, config.keeps
  local recent_limit, session_ttl, max_fields = config.recent_limit, config.session_ttl, config.max_fields
  -- Dedup first; only new events go on. SET NX and the updates below commit together.
  local fresh = {}
  local duplicates = 0
  for _, e in ipairs(events) do
    if redis.call('SET', prefix .. 'd:' .. e[1], '1', 'NX', 'EX', config.dedup_ttl) then
      fresh[#fresh + 1] = e
    else
      duplicates = duplicates + 1
    end
  end
  if #fresh == 0 then return 0, duplicates end

  -- Which fields change, then one HMGET for all of them.
  local names, index = {}, {}
  local function want(name)
    if not index[name] then
      names[#names + 1] = name
      index[name] = #names
    end
  end
  for _, e in ipairs(fresh) do
    local at = e[2]
    for i = 1, n_sizes do
      local size = sizes[i]
      local start = math.floor(at / size) * size
      if start + keeps[size] > now then want('b' .. size .. ':' .. start) end
    end
    for j = 5, #e, 2 do want('r:' .. e[j]) end
    if e[4] ~= '' then want('s:' .. e[4]) end
  end
  want('@')
  local current = redis.call('HMGET', profile, unpack(names))
  local prune_at = tonumber(current[#names]) or 0
  names[#names] = nil
  local values, sizes_of = {}, {}
  for i, name in ipairs(names) do
    local raw = current[i]
    local kind = string.sub(name, 1, 1)
    if raw then
      values[name] = cjson.decode(raw)
    elseif kind == 's' then
      values[name] = {0, 0, false, false}
    else
      values[name] = {}
    end
    if kind == 'b' then
      local n = 0
      for _ in pairs(values[name]) do n = n + 1 end
      sizes_of[name] = n
    end
  end

  for _, e in ipairs(fresh) do
    local at, counter, session = e[2], e[3], e[4]
    for i = 1, n_sizes do
      local size = sizes[i]
      local start = math.floor(at / size) * size
      local field = 'b' .. size .. ':' .. start
      local bucket = values[field]
      if bucket then
        if not bucket[counter] then sizes_of[field] = sizes_of[field] + 1 end
        bucket[counter] = (bucket[counter] or 0) + 1
        for j = 5, #e, 2 do
          local name = counter .. '|' .. e[j] .. '|' .. e[j + 1]
          -- Totals always count; a new dimension value only while the bucket has room, so one user
          -- with endless distinct values cannot grow memory without bound.
          if bucket[name] then
            bucket[name] = bucket[name] + 1
          elseif sizes_of[field] < max_fields then
            bucket[name] = 1
            sizes_of[field] = sizes_of[field] + 1
          end
        end
      end
    end
    for j = 5, #e, 2 do
      local list = values['r:' .. e[j]]
      local value = e[j + 1]
      local position = #list + 1
      for k, item in ipairs(list) do
        if item[1] == value then
          if item[2] >= at then position = 0 end
          break
        end
      end
      if position ~= 0 then
        for k = #list, 1, -1 do
          if list[k][1] == value then table.remove(list, k) end
        end
        -- Keep newest first, by event time: a late event lands behind newer ones.
        local insert_at = #list + 1
        for k, item in ipairs(list) do
          if item[2] < at then
            insert_at = k
            break
          end
        end
        table.insert(list, insert_at, {value, at})
        while #list > recent_limit do table.remove(list) end
      end
    end
    if session ~= '' then
      local s = values['s:' .. session]
      if counter == 'views' then s[1] = s[1] + 1 end
      s[2] = s[2] + 1
      if not s[3] or at < s[3] then s[3] = at end
      if not s[4] or at > s[4] then s[4] = at end
    end
  end

  local flat = {}
  for _, name in ipairs(names) do
    flat[#flat + 1] = name
    flat[#flat + 1] = cjson.encode(values[name])
  end
  -- Now and then (once per smallest bucket) drop buckets no window reads any more, and ended
  -- sessions; between prunes they cost memory only until the next one, and the hash TTL bounds all.
  if now >= prune_at then
    flat[#flat + 1] = '@'
    flat[#flat + 1] = math.floor(now + config.prune_every)
  end
  redis.call('HSET', profile, unpack(flat))
  if now >= prune_at then
    local stale = {}
    for _, name in ipairs(redis.call('HKEYS', profile)) do
      local kind = string.sub(name, 1, 1)
      if kind == 'b' then
        local size, start = string.match(name, '^b(%d+):(%-?%d+)$')
        local keep = keeps[tonumber(size)]
        if not keep or tonumber(start) + keep <= now then stale[#stale + 1] = name end
      elseif kind == 's' and not values[name] then
        local s = cjson.decode(redis.call('HGET', profile, name))
        if not s[4] or s[4] + session_ttl <= now then stale[#stale + 1] = name end
      end
    end
    if #stale > 0 then redis.call('HDEL', profile, unpack(stale)) end
  end
  redis.call('EXPIRE', profile, config.ttl)
  return #fresh, duplicates
end

-- Write: dedup and count the events of one or more users in one atomic step, so that a worker dying
-- at any point leaves every event either counted and marked seen, or neither.
--   KEYS: the profile hash of each user
--   ARGV: now, dedup_ttl, recent_limit, session_ttl, max_fields, ttl, n_sizes, (size, keep) * n_sizes,
--         then for each user (key): events-json
--   events-json: [[id, at, counter, session or "", dim1, value1, dim2, value2, ...], ...]
--   returns {counted, duplicates}
local function write(keys, args)
  local now = tonumber(args[1])
  local n_sizes = tonumber(args[7])
  local config = {
    now = now,
    dedup_ttl = args[2],
    recent_limit = tonumber(args[3]),
    session_ttl = tonumber(args[4]),
    max_fields = tonumber(args[5]),
    ttl = args[6],
    n_sizes = n_sizes,
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
  local first = 8 + 2 * n_sizes
  local counted, duplicates = 0, 0
  for u = 1, #keys do
    local profile = keys[u]
    -- The user's other keys share the profile key's prefix (it ends in 'p').
    local c, d = write_user(config, profile, string.sub(profile, 1, -2), cjson.decode(args[first + u - 1]))
    counted = counted + c
    duplicates = duplicates + d
  end
  return {counted, duplicates}
end

-- Read: the user's counters summed per window, recent values and one session, as compact JSON.
--   ARGV: prefix, now, session or "", session_ttl, n_windows, (name, seconds, size) * n_windows
--   returns {"c": {window: {counter: n}}, "r": {dimension: [newest first]}, "s": [pv, ev, st, ls] | false}
local function read(keys, args)
  local now = tonumber(args[2])
  local session = 's:' .. args[3]
  local session_ttl = tonumber(args[4])
  local n_windows = tonumber(args[5])
  -- For each bucket size, the windows using it and the oldest bucket start each one sums.
  local by_size = {}
  local counts = {}
  for w = 1, n_windows do
    local name = args[3 + 3 * w]
    local seconds = tonumber(args[4 + 3 * w])
    local size = tonumber(args[5 + 3 * w])
    local current = math.floor(now / size) * size
    local list = by_size[size]
    if not list then
      list = {}
      by_size[size] = list
    end
    list[#list + 1] = {current - (math.ceil(seconds / size) - 1) * size, current, {}}
    counts[name] = list[#list][3]
  end

  local recent = {}
  local stats = false
  local flat = redis.call('HGETALL', keys[1])
  for i = 1, #flat, 2 do
    local name = flat[i]
    local kind = string.sub(name, 1, 1)
    if kind == 'b' then
      local size, start = string.match(name, '^b(%d+):(%-?%d+)$')
      local windows = by_size[tonumber(size)]
      if windows then
        start = tonumber(start)
        local bucket = nil
        for _, window in ipairs(windows) do
          if start >= window[1] and start <= window[2] then
            bucket = bucket or cjson.decode(flat[i + 1])
            local sums = window[3]
            for counter, n in pairs(bucket) do sums[counter] = (sums[counter] or 0) + n end
          end
        end
      end
    elseif kind == 'r' then
      local values = {}
      for k, item in ipairs(cjson.decode(flat[i + 1])) do values[k] = item[1] end
      recent[string.sub(name, 3)] = values
    elseif name == session then
      local s = cjson.decode(flat[i + 1])
      if s[4] and s[4] + session_ttl > now then stats = s end
    end
  end
  return cjson.encode({c = counts, r = recent, s = stats})
end

-- Several users per call touch several slots: allowed on one node; a Cluster client groups by node.
redis.register_function{function_name = '__WRITE__', callback = write, flags = {'allow-cross-slot-keys'}}
redis.register_function{function_name = '__READ__', callback = read, flags = {'no-writes'}}
