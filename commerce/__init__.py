"""Catalog, pins and orders on Redis, atomic in Lua (contract: ../shared/API.md, Commerce).

:mod:`commerce.catalog` (products, live stock, the pin), :mod:`commerce.orders` with
:mod:`commerce.order_scripts` (reserve / confirm / release, one Lua script each),
:mod:`commerce.fastpath` (the order route without the middleware stack), :mod:`commerce.http`
(the routes), :mod:`commerce.chat_orders` (a chat line like ``구매 2``: the hook commerce gives
the chat), :mod:`commerce.payments`, :mod:`commerce.sweeper` (expired holds),
:mod:`commerce.webhooks` (the merchant's shop), :mod:`commerce.export` (CSV),
:mod:`commerce.shop` (the parts of the app the routes are handed), :mod:`commerce.errors`.
Events (stock, orders, pins) go into the broadcast's stream through :mod:`core.events`.
"""
