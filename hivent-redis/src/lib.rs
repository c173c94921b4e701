//! hivent-redis: the partitioned Redis backend (being built; see the Redis issue).
