-- The gift leaderboard is rebuilt from the paid orders after each relay round that gave gifts
-- in a room: one SUM per user over the room's paid orders in a currency, read from this index
-- alone.
CREATE INDEX orders_room_totals ON orders (room_id, currency, status, user_id, amount);
