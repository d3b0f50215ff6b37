-- Sliding window counter for every limit of one request, in one call, on the
-- layout of Python's `limits` 5.8: the current window's count at
-- `LIMITS:{key}` (created with PX 2 x window) and the previous one at
-- `LIMITS:{key}/-1`; when the current count's PTTL falls below one window it
-- becomes the previous one (RENAME keeps its TTL) and a new current count of
-- 0 is set with PX pttl + window. Weighted count:
-- floor(prev * prev_pttl / window) + cur.
--
-- KEYS[2i-1], KEYS[2i]  the previous and current counts of item i
-- ARGV[2]      unused (the other scripts' clock argument)
-- ARGV[3+4(i-1)..]  item i: amount, window in seconds, cost, peek (1) or hit (0)
--
-- Returns, per item: evaluated (0/1), allowed (0/1), prev, prev PTTL, cur,
-- cur PTTL (PTTLs in milliseconds, negative when the key is missing).
local ITEMS = #KEYS / 2
local out = {}

local function arg(i, k)
  return tonumber(ARGV[2 + 4 * (i - 1) + k])
end

local function keys(i)
  return KEYS[2 * i - 1], KEYS[2 * i]
end

local function pending_key(i)
  local _, cur_key = keys(i)
  return cur_key
end

local function read(i)
  local prev_key, cur_key = keys(i)
  return tonumber(redis.call('GET', prev_key) or '0'), redis.call('PTTL', prev_key),
    tonumber(redis.call('GET', cur_key) or '0'), redis.call('PTTL', cur_key)
end

-- `limits`' shift: the current window ended when its key has less than a
-- window to live.
local function prepare(i)
  local prev_key, cur_key = keys(i)
  local exp = arg(i, 2) * 1000
  local cur_ttl = redis.call('PTTL', cur_key)
  if cur_ttl > 0 and cur_ttl < exp then
    redis.call('RENAME', cur_key, prev_key)
    redis.call('SET', cur_key, 0, 'PX', cur_ttl + exp)
  end
end

local function fits(i, extra)
  local amount, cost, exp = arg(i, 1), arg(i, 3), arg(i, 2) * 1000
  if cost > amount then
    return 0
  end
  local prev, prev_ttl, cur = read(i)
  local weighted = math.floor(prev * math.max(prev_ttl, 0) / exp) + cur
  if weighted + extra + cost > amount then
    return 0
  end
  return 1
end

local function commit(i)
  local _, cur_key = keys(i)
  local cost, exp = arg(i, 3), arg(i, 2) * 1000
  if redis.call('EXISTS', cur_key) == 1 then
    redis.call('INCRBY', cur_key, cost)
  else
    redis.call('SET', cur_key, cost, 'PX', 2 * exp)
  end
end

local function take(i)
  local allowed = fits(i, 0)
  if allowed == 1 then
    commit(i)
  end
  return allowed
end

local function report(i, evaluated, allowed)
  local prev, prev_ttl, cur, cur_ttl = read(i)
  table.insert(out, evaluated)
  table.insert(out, allowed)
  table.insert(out, prev)
  table.insert(out, prev_ttl)
  table.insert(out, cur)
  table.insert(out, cur_ttl)
end

local function skipped()
  for _ = 1, 6 do
    table.insert(out, 0)
  end
end
