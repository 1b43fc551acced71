//! Valid example beacons of every type, with every field the type allows.

#![allow(unreachable_pub)]

use serde_json::{json, Value};

pub const TS: u64 = 1_763_800_000_000;

pub fn base(kind: &str) -> Value {
    let mut beacon = json!({
        "v": 1, "type": kind, "ts": TS, "session_id": "sess-0001", "seq": 7, "room_id": "room-42",
        "platform": "android", "user_id": "user-9", "device_id": "dev-1", "app_version": "5.2.0",
        "os": "Android 14", "device_model": "Pixel 8", "network": "wifi", "isp": "isp-a",
        "region": "eu-west", "cdn": "cdn-a", "edge_ip": "203.0.113.7", "exp": {"abr": "b"}
    });
    let own = match kind {
        "play_start" | "room_join" => json!({}),
        "first_frame" => json!({
            "first_frame_ms": 900, "dns_ms": 50, "connect_ms": 60, "first_packet_ms": 200,
            "resolver": "httpdns", "rtt_ms": 35
        }),
        "play_heartbeat" => json!({
            "interval_ms": 10_000, "watch_ms": 9_000, "stall_count": 1, "stall_ms": 800, "dropped_frames": 3,
            "bitrate_kbps": 2_500, "buffer_ms": 4_000, "latency_ms": 3_100, "fps": 29.97, "rtt_ms": 40,
            "startup_skip_ms": 200, "startup_speedup_ms": 150
        }),
        "play_error" => json!({"code": "E1001", "fatal": true, "category": "technical", "stage": "connect"}),
        "play_end" => json!({
            "reason": "exit", "first_frame_seen": true, "interval_ms": 4_000, "watch_ms": 3_500,
            "stall_count": 0, "stall_ms": 0, "dropped_frames": 0
        }),
        "push_start" => json!({"capture_width": 1280, "capture_height": 720, "capture_fps": 30, "encoder": "x264"}),
        "push_heartbeat" => json!({
            "interval_ms": 10_000, "cpu_pct": 35.5, "mem_mb": 310.0, "encode_fps": 29.5, "target_kbps": 2_000,
            "output_kbps": 1_900, "dropped_frames": 0, "stall_count": 0, "stall_ms": 0, "rtt_ms": 20
        }),
        "push_end" => {
            json!({"reason": "ended", "interval_ms": 3_000, "dropped_frames": 0, "stall_count": 0, "stall_ms": 0})
        }
        "room_leave" => json!({"reason": "user_exit"}),
        other => panic!("no example for {other}"),
    };
    for (key, value) in own.as_object().unwrap() {
        beacon[key] = value.clone();
    }
    beacon
}
