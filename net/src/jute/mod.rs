//! The ZooKeeper wire protocol (jute records, framing).
