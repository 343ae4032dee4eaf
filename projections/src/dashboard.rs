//! The PostgreSQL read models (being written).
