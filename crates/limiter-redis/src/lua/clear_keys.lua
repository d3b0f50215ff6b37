-- Deletes every key matching KEYS[1] (`LIMITS:*`), in batches of 5000 as
-- `limits`' clear_keys.lua does; returns how many were deleted.
local keys = redis.call('KEYS', KEYS[1])
local deleted = 0
for i = 1, #keys, 5000 do
  deleted = deleted + redis.call('DEL', unpack(keys, i, math.min(i + 4999, #keys)))
end
return deleted
