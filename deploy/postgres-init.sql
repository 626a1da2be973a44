CREATE DATABASE oxidp_commerce OWNER oxidp;
