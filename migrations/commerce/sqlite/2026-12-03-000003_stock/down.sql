DROP TABLE stock_adjustments;
DROP TABLE stock;
