
-- The driver every strategy's script ends with. The strategy defines, for
-- item i: ITEMS (how many items), prepare(i) (before anything is decided),
-- fits(i, extra) (1 if its cost fits with `extra` more already taken by
-- earlier items of the batch), pending_key(i) (what `extra` is counted by),
-- take(i) (a sequential hit: 1 if allowed), commit(i) (consume, once all
-- fit), report(i, evaluated, allowed) and skipped() (an item not evaluated).
--
-- ARGV[1]: 0 sequential, stop at the first refusal; 1 sequential, no stop;
-- 2 all or nothing; 3 peek every item; 4 all or nothing decided but never
-- consumed (the trial phase of a batch spanning cluster slots).
local mode = tonumber(ARGV[1])

for i = 1, ITEMS do
  prepare(i)
end

if mode == 2 or mode == 4 then
  local added, allowed, all = {}, {}, 1
  for i = 1, ITEMS do
    allowed[i] = fits(i, added[pending_key(i)] or 0)
    if allowed[i] == 0 then
      all = 0
    end
    if arg(i, 4) == 0 then
      added[pending_key(i)] = (added[pending_key(i)] or 0) + arg(i, 3)
    end
  end
  if all == 1 and mode == 2 then
    for i = 1, ITEMS do
      if arg(i, 4) == 0 then
        commit(i)
      end
    end
  end
  for i = 1, ITEMS do
    report(i, 1, allowed[i])
  end
  return out
end

local stopped = false
for i = 1, ITEMS do
  if stopped then
    skipped()
  else
    local allowed
    if mode == 3 or arg(i, 4) == 1 then
      allowed = fits(i, 0)
    else
      allowed = take(i)
    end
    report(i, 1, allowed)
    if allowed == 0 and mode == 0 then
      stopped = true
    end
  end
end
return out
