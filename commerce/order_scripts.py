"""The Lua source of order capture: ``RESERVE`` and ``MOVE``, each run as one atomic script.

``RESERVE`` checks an order (idempotency, product and option, pinned deal, cooldown, stock,
per-buyer limit, open-order caps), takes the stock in ``hold`` mode, writes the order record and
its indexes and appends the ``order``/``stock`` events (and the outbox entry); ``MOVE`` takes a
reserved order to ``paid``, ``cancelled`` or ``expired``, returning the stock exactly once. Above
each script: what its KEYS and ARGV are, in the order ``commerce.orders.Orders`` passes them; the
key layout and the rules are described in ``commerce/orders.py``.
"""

from __future__ import annotations

# KEYS: 1 products, 2 stock, 3 pin, 4 idem, 5 bought, 6 order, 7 orders, 8 holds, 9 stream,
#       10 broadcast meta, 11 webhook outbox, 12 open counts, 13 the buyer's cooldown on the
#       product, 14 the broadcast's numbers (core/numbers.py)
# ARGV: 1 pid, 2 option, 3 qty, 4 body hash, 5 now ms, 6 hold ms, 7 oid, 8 buyer id,
#       9 buyer name, 10 masked name, 11 idem ttl s, 12 maxlen, 13 buyer address,
#       14 flash-sale hold ms, 15 open per buyer, 16 open per address, 17 outbox on ('1'),
#       18 buyer's identity made at (ms), 19 buyer verified ('1'), 20 'replay' for an order
#       from the show's replay (taken after the show too, at the product's own price),
#       21-24 the currency the buyer saw the price in ('' for won only), won→it rate,
#       decimals, the rates' date, 25 count it in the numbers ('1')
RESERVE = r"""
local bstatus = redis.call('HGET', KEYS[10], 'status')
if not bstatus then return {'unknown_broadcast'} end
local replay = ARGV[20] == 'replay'
if bstatus == 'ended' and not replay then return {'ended'} end
local prev = redis.call('GET', KEYS[4])
if prev then
  local sep = string.find(prev, '|', 1, true)
  if string.sub(prev, 1, sep - 1) ~= ARGV[4] then return {'key_reused'} end
  return {'replay', string.sub(prev, sep + 1)}
end
local pj = redis.call('HGET', KEYS[1], ARGV[1])
if not pj then return {'unknown_product'} end
local p = cjson.decode(pj)
local skey = ARGV[1]
local option_name = ''
if #p.options > 0 then
  if ARGV[2] == '' then return {'option_required'} end
  for _, o in ipairs(p.options) do
    if o.id == ARGV[2] then option_name = o.name end
  end
  if option_name == '' then return {'unknown_option'} end
  skey = ARGV[1] .. '/' .. ARGV[2]
elseif ARGV[2] ~= '' then
  return {'unknown_option'}
end
local now = tonumber(ARGV[5])
local qty = tonumber(ARGV[3])
local price = p.price
local deal = nil
local hold_ms = tonumber(ARGV[6])
local pin = redis.call('GET', KEYS[3])
if pin and not replay then  -- a pinned deal is for the live show
  local pn = cjson.decode(pin)
  if pn.product_id == ARGV[1] then
    if pn.eligible == 'joined_before' and tonumber(ARGV[18]) >= (pn.pinned_at or 0) then
      return {'not_eligible', 'joined_before'}
    end
    if pn.eligible == 'verified' and ARGV[19] ~= '1' then return {'not_eligible', 'verified'} end
    if type(pn.deal_price) == 'number' then
      if type(pn.deal_ends_at) == 'number' and now >= pn.deal_ends_at then
        return {'deal_ended'}
      end
      price = pn.deal_price
      deal = {price = pn.deal_price, ends_at = pn.deal_ends_at}
      hold_ms = math.min(hold_ms, tonumber(ARGV[14]))  -- a flash sale holds for less
    end
  end
end
if redis.call('EXISTS', KEYS[13]) == 1 then
  return {'cooldown', tostring(redis.call('PTTL', KEYS[13]))}
end
local left = tonumber(redis.call('HGET', KEYS[2], skey) or '0')
if left < qty then return {'sold_out', tostring(left)} end
if p.per_buyer_limit > 0 then
  local had = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
  if had + qty > p.per_buyer_limit then
    return {'limit_exceeded', tostring(p.per_buyer_limit - had)}
  end
end
local ou = 'u:' .. ARGV[8]
if tonumber(redis.call('HGET', KEYS[12], ou) or '0') >= tonumber(ARGV[15]) then
  return {'too_many_open', 'buyer'}
end
local oa = 'a:' .. ARGV[13]
if ARGV[13] ~= '' and tonumber(redis.call('HGET', KEYS[12], oa) or '0') >= tonumber(ARGV[16]) then
  return {'too_many_open', 'address'}
end
local hold = p.mode == 'hold'
if not hold then  -- first paid, first served: at most three payers racing for each unit left
  local op = 'p:' .. skey
  if tonumber(redis.call('HGET', KEYS[12], op) or '0') >= math.max(3 * left, 10) then
    return {'oversubscribed', tostring(left)}
  end
  redis.call('HINCRBY', KEYS[12], op, 1)
end
redis.call('HINCRBY', KEYS[12], ou, 1)
if ARGV[13] ~= '' then redis.call('HINCRBY', KEYS[12], oa, 1) end
if hold then left = redis.call('HINCRBY', KEYS[2], skey, -qty) end
redis.call('HINCRBY', KEYS[5], ARGV[1], qty)
local expires = now + hold_ms
local shown = {name = p.name, price = price, list_price = p.list_price, deal = deal or cjson.null}
if replay then shown.via = 'replay' end
if ARGV[21] ~= '' then
  local scale = 10 ^ tonumber(ARGV[23])
  shown.converted = {currency = ARGV[21], rates_date = ARGV[24],
    amount = math.floor(price * qty * tonumber(ARGV[22]) * scale + 0.5) / scale}
end
local answer = {
  id = ARGV[7], status = 'reserved', product_id = ARGV[1],
  option = ARGV[2] ~= '' and ARGV[2] or cjson.null,
  qty = qty, unit_price = price, total = price * qty, shown = shown,
  created_at = now, expires_at = expires, mode = p.mode
}
local answer_json = cjson.encode(answer)
redis.call('HSET', KEYS[6], 'id', ARGV[7], 'status', 'reserved', 'product_id', ARGV[1],
  'option', ARGV[2], 'option_name', option_name, 'stock_key', skey, 'qty', qty,
  'unit_price', price, 'mode', p.mode, 'stock_taken', hold and '1' or '0',
  'buyer_id', ARGV[8], 'buyer_name', ARGV[9], 'shown', cjson.encode(shown),
  'created_at', now, 'expires_at', expires, 'answer', answer_json, 'addr', ARGV[13],
  'idem_key', KEYS[4], 'counted', ARGV[25])
if ARGV[25] == '1' then  -- the merchant's numbers: a sale until it is cancelled or expires
  local pid = ARGV[1]  -- per product only: the totals are their sums (commerce/stats.py)
  redis.call('HINCRBY', KEYS[14], 'o:' .. pid, 1)
  redis.call('HINCRBY', KEYS[14], 'u:' .. pid, qty)
  redis.call('HINCRBY', KEYS[14], 'g:' .. pid, price * qty)
end
redis.call('ZADD', KEYS[7], now, ARGV[7])
redis.call('ZADD', KEYS[8], expires, ARGV[7])
redis.call('SET', KEYS[4], ARGV[4] .. '|' .. answer_json, 'EX', ARGV[11])
redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[12], '*', 'e', cjson.encode(
  {type = 'order', product_id = ARGV[1], buyer_name_masked = ARGV[10], qty = qty, ts = now}))
if hold then
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[12], '*', 'e', cjson.encode(
    {type = 'stock', product_id = ARGV[1], option = ARGV[2] ~= '' and ARGV[2] or cjson.null,
     left = left, ts = now}))
end
if ARGV[17] == '1' then
  redis.call('XADD', KEYS[11], 'MAXLEN', '~', '10000', '*', 'type', 'order.created',
    'order', ARGV[7])
end
return {'ok', answer_json}
"""

# KEYS: 1 order, 2 holds, 3 stock, 4 bought, 5 stream, 6 webhook outbox, 7 open counts,
#       8 the buyer's cooldown on the product, 9 the broadcast's numbers
# ARGV: 1 target (paid|cancelled|expired), 2 now ms, 3 maxlen, 4 require_due ('1' for the sweeper),
#       5 how long an unpaid order's record is kept (s), 6 cooldown after an expired hold (ms),
#       7 outbox on ('1')
MOVE = r"""
local o = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'qty', 'stock_key', 'stock_taken',
                     'product_id', 'option', 'id', 'buyer_id', 'addr', 'mode', 'unit_price',
                     'counted')
local status = o[1]
if not status then return {'not_found'} end
local target = ARGV[1]
local now = tonumber(ARGV[2])
if status == target then return {'same', status} end
if status ~= 'reserved' then return {'bad_state', status} end
local qty = tonumber(o[3])
local due = now >= tonumber(o[2])
if ARGV[4] == '1' and not due then return {'not_due', status} end
if target == 'paid' and due then target = 'expired' end
local left = nil
if target == 'paid' then
  if o[5] == '0' then
    local have = tonumber(redis.call('HGET', KEYS[3], o[4]) or '0')
    if have < qty then return {'sold_out', tostring(have)} end
    left = redis.call('HINCRBY', KEYS[3], o[4], -qty)
    redis.call('HSET', KEYS[1], 'stock_taken', '1')
  end
  redis.call('HSET', KEYS[1], 'status', 'paid', 'paid_at', now)
  if o[13] == '1' then
    redis.call('HINCRBY', KEYS[9], 'po:' .. o[6], 1)
    redis.call('HINCRBY', KEYS[9], 'pu:' .. o[6], qty)
    redis.call('HINCRBY', KEYS[9], 'pg:' .. o[6], qty * tonumber(o[12]))
  end
else
  if o[5] == '1' then left = redis.call('HINCRBY', KEYS[3], o[4], qty) end
  redis.call('HINCRBY', KEYS[4], o[6], -qty)
  redis.call('HSET', KEYS[1], 'status', target, 'closed_at', now, 'stock_taken', '0')
  redis.call('EXPIRE', KEYS[1], ARGV[5])  -- an unpaid order is kept a while, not forever
  if target == 'expired' and tonumber(ARGV[6]) > 0 then
    redis.call('SET', KEYS[8], '1', 'PX', ARGV[6])  -- no renewing a hold by ordering again
  end
  if o[13] == '1' then  -- no longer a sale
    local pid = o[6]
    redis.call('HINCRBY', KEYS[9], 'o:' .. pid, -1)
    redis.call('HINCRBY', KEYS[9], 'u:' .. pid, -qty)
    redis.call('HINCRBY', KEYS[9], 'g:' .. pid, -qty * tonumber(o[12]))
    redis.call('HINCRBY', KEYS[9], target, 1)
  end
end
local counted = {'u:' .. o[9]}  -- it no longer counts as open
if o[10] and o[10] ~= '' then counted[#counted + 1] = 'a:' .. o[10] end
if o[11] == 'fpfs' then counted[#counted + 1] = 'p:' .. o[4] end
for _, f in ipairs(counted) do
  if redis.call('HINCRBY', KEYS[7], f, -1) <= 0 then redis.call('HDEL', KEYS[7], f) end
end
redis.call('ZREM', KEYS[2], o[8])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'e', cjson.encode(
  {type = 'order_status', id = o[8], status = target, to = o[9], ts = now}))
if left then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'e', cjson.encode(
    {type = 'stock', product_id = o[6], option = o[7] ~= '' and o[7] or cjson.null, left = left,
     ts = now}))
end
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', '10000', '*',
    'type', target == 'paid' and 'order.paid' or 'order.cancelled', 'order', o[8], 'reason', target)
end
if target ~= ARGV[1] then return {'expired', target} end
return {'ok', target}
"""
