DROP TABLE product_events;
DROP TABLE combinations;
DROP TABLE product_options;
DROP TABLE option_groups;
DROP TABLE products;
DROP TABLE seller_members;
DROP TABLE sellers;
