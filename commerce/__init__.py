"""Catalog, pins and orders (atomic Lua reserve/confirm/release on Redis).

Not built yet: see the orders issue. The broadcast spine leaves room for it in the app's routes.
"""
