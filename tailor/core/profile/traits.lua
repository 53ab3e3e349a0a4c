-- Write one user's traits (tailor.core.profile.traits; docs/traits.md).
-- KEYS[1]: the user's traits hash. ARGV[1]: now (epoch seconds); then triples of
-- (trait name, its document {"v": value, "e": expires at, "t": written at}, written at).
-- A document older (by "t") than the one stored is not written: a replayed or late write never
-- replaces a newer value. Fields past their expiry are dropped (and counted); the key expires
-- with its latest field. Returns {written, stale, expired}.
local key = KEYS[1]
local now = tonumber(ARGV[1])
local written, stale, expired = 0, 0, 0
local kept = {}
local current = redis.call('HGETALL', key)
for i = 1, #current, 2 do
  local ok, doc = pcall(cjson.decode, current[i + 1])
  if ok and type(doc) == 'table' and type(doc.e) == 'number' and doc.e > now then
    kept[current[i]] = doc
  else
    redis.call('HDEL', key, current[i])
    expired = expired + 1
  end
end
for i = 2, #ARGV, 3 do
  local name, encoded, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local old = kept[name]
  if old ~= nil and type(old.t) == 'number' and old.t > at then
    stale = stale + 1
  else
    redis.call('HSET', key, name, encoded)
    kept[name] = cjson.decode(encoded)
    written = written + 1
  end
end
local latest = 0
for _, doc in pairs(kept) do
  if doc.e > latest then latest = doc.e end
end
if latest > 0 then
  redis.call('PEXPIREAT', key, math.ceil(latest * 1000))
end
return {written, stale, expired}
