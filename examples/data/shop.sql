-- A small shop for the SQLite example (examples/sqlite.yaml): customers, products, orders and their lines.
-- Rebuild examples/data/shop.db from this file, from the repository root:
--   rm -f examples/data/shop.db && sqlite3 examples/data/shop.db < examples/data/shop.sql
-- (without the sqlite3 CLI:
--   python3 -c 'import sqlite3; sqlite3.connect("examples/data/shop.db").executescript(open("examples/data/shop.sql").read())')
-- The same file loads into PostgreSQL for examples/postgres.yaml: psql -d shop -f examples/data/shop.sql

CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    city TEXT,
    joined DATE NOT NULL
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    in_stock INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    ordered_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'shipped', 'delivered', 'cancelled'))
);

CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

INSERT INTO customers (id, name, email, city, joined) VALUES
    (1, 'Ada Lovelace', 'ada@example.com', 'London', '2023-01-15'),
    (2, 'Grace Hopper', 'grace@example.com', 'New York', '2023-02-03'),
    (3, 'Edsger Dijkstra', 'edsger@example.com', 'Amsterdam', '2023-03-21'),
    (4, 'Barbara Liskov', 'barbara@example.com', 'Boston', '2023-05-09'),
    (5, 'Donald Knuth', 'donald@example.com', 'Stanford', '2023-06-30'),
    (6, 'Frances Allen', 'frances@example.com', 'Peru NY', '2023-08-12'),
    (7, 'Alan Kay', 'alan@example.com', 'Los Angeles', '2023-10-01'),
    (8, 'Margaret Hamilton', 'margaret@example.com', 'Boston', '2024-01-07');

INSERT INTO products (id, name, category, price_cents, in_stock) VALUES
    (1, 'Mechanical keyboard', 'hardware', 8900, 14),
    (2, 'Trackball', 'hardware', 4900, 6),
    (3, '27" monitor', 'hardware', 25900, 3),
    (4, 'USB-C hub', 'hardware', 3900, 0),
    (5, 'The Art of Computer Programming', 'books', 19900, 5),
    (6, 'Structure and Interpretation of Computer Programs', 'books', 4500, 9),
    (7, 'A Discipline of Programming', 'books', 3800, 2),
    (8, 'Desk lamp', 'office', 2900, 21),
    (9, 'Notebook, dotted', 'office', 900, 120),
    (10, 'Coffee, 1 kg', 'office', 1900, 40);

INSERT INTO orders (id, customer_id, ordered_at, status) VALUES
    (1, 1, '2024-02-01 09:12:00', 'delivered'),
    (2, 2, '2024-02-03 14:40:00', 'delivered'),
    (3, 3, '2024-02-10 11:05:00', 'shipped'),
    (4, 1, '2024-03-02 16:20:00', 'shipped'),
    (5, 5, '2024-03-05 08:55:00', 'pending'),
    (6, 4, '2024-03-07 19:30:00', 'cancelled'),
    (7, 6, '2024-03-11 10:00:00', 'delivered'),
    (8, 8, '2024-03-12 12:45:00', 'pending'),
    (9, 7, '2024-03-14 17:10:00', 'shipped'),
    (10, 2, '2024-03-15 09:30:00', 'pending');

INSERT INTO order_items (order_id, product_id, quantity) VALUES
    (1, 1, 1), (1, 9, 3),
    (2, 5, 1), (2, 10, 2),
    (3, 7, 1), (3, 6, 1),
    (4, 3, 1), (4, 8, 1),
    (5, 5, 1),
    (6, 2, 1),
    (7, 4, 2), (7, 9, 5),
    (8, 1, 1), (8, 2, 1), (8, 10, 1),
    (9, 6, 2),
    (10, 8, 2), (10, 9, 10);
