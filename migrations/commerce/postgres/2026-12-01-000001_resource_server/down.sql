DROP TABLE rs_key_sets;
