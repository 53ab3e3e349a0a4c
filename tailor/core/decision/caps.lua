-- Frequency caps: check and count in one atomic step, so parallel requests can never exceed a cap.
--
-- KEYS[1]      the user's API session hash: "m:<slot>" -> "<rule>\31<variant>" (session memory),
--              "c:<rule>" -> impressions of the rule in this session
-- KEYS[2..]    per-user cap sorted sets, one per rule with a per-user cap: member per impression,
--              scored by its time
-- ARGV[1] now (seconds), ARGV[2] session TTL (seconds), ARGV[3] plan (JSON):
--   [[memory_field, [[rule, per_session, per_user, window_seconds, key_index, memory_value, member], ...]], ...]
--   one entry per slot; candidates in serving order; a zero limit means "no cap".
-- Returns, per slot, the 1-based index of the candidate served (its caps counted), or 0 for none.
local session = KEYS[1]
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local plan = cjson.decode(ARGV[3])
local chosen = {}
for s, slot in ipairs(plan) do
  chosen[s] = 0
  for i, c in ipairs(slot[2]) do
    local rule, per_session, per_user, window = c[1], c[2], c[3], c[4]
    local ok = true
    if per_session > 0 then
      ok = tonumber(redis.call('HGET', session, 'c:' .. rule) or '0') < per_session
    end
    local capkey = KEYS[c[5]]
    if ok and per_user > 0 then
      redis.call('ZREMRANGEBYSCORE', capkey, '-inf', now - window)
      ok = redis.call('ZCARD', capkey) < per_user
    end
    if ok then
      if per_session > 0 then
        redis.call('HINCRBY', session, 'c:' .. rule, 1)
      end
      if per_user > 0 then
        redis.call('ZADD', capkey, now, c[7])
        redis.call('EXPIRE', capkey, math.ceil(window) + 1)
      end
      redis.call('HSET', session, slot[1], c[6])
      chosen[s] = i
      break
    end
  end
end
redis.call('EXPIRE', session, ttl)
return chosen
