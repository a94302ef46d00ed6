//! `detectevents` publishing to a real MQTT broker: Debian's Mosquitto, started here on a free
//! loopback port, read back by a real MQTT client. Events, retained counts and snapshots; the
//! broker killed and restarted mid-stream; a wrong password; TLS.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tracked::{events_harness, tracked_frame};
use common::*;
use gst::prelude::*;

/// A Mosquitto broker on 127.0.0.1, killed when dropped.
struct Broker {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    _dir: TempPath,
}

fn mosquitto_binary() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

impl Broker {
    /// `extra`: more configuration lines (users, TLS); anonymous clients are let in without.
    fn start(name: &str, extra: &str) -> Broker {
        let dir = TempPath::new(name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = dir.to_path_buf().join("mosquitto.conf");
        let anonymous = if extra.contains("password_file") {
            "false"
        } else {
            "true"
        };
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous {anonymous}\n{extra}\n"),
        )
        .unwrap();
        let mut broker = Broker {
            child: None,
            port,
            config,
            _dir: dir,
        };
        broker.restart();
        broker
    }

    fn restart(&mut self) {
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (the set-up installs Debian's mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real MQTT client subscribed to everything, keeping what arrives (retained or not).
/// Topic and payload of each message, in arrival order.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct Subscriber {
    received: Received,
    client: rumqttc::Client,
}

impl Subscriber {
    fn connect(port: u16, id: &str) -> Subscriber {
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 100);
        client.subscribe("#", rumqttc::QoS::AtLeastOnce).unwrap();
        let received: Received = Arc::default();
        let store = received.clone();
        let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        store.lock().unwrap().push((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        subscribed
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribed to the broker");
        Subscriber { received, client }
    }

    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.received.lock().unwrap().clone()
    }

    /// The event payloads received, as JSON.
    fn events(&self) -> Vec<serde_json::Value> {
        self.messages()
            .iter()
            .filter(|(topic, _)| topic.ends_with("/events"))
            .map(|(_, payload)| serde_json::from_slice(payload).unwrap())
            .collect()
    }

    /// The newest value of each topic, as text (but snapshots).
    fn latest(&self) -> BTreeMap<String, String> {
        self.messages()
            .into_iter()
            .filter(|(topic, _)| !topic.ends_with("/snapshot"))
            .map(|(topic, payload)| (topic, String::from_utf8_lossy(&payload).into_owned()))
            .collect()
    }

    /// Waits until `done` holds for what arrived.
    fn wait_for(&self, seconds: u64, done: impl Fn(&Subscriber) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done(self)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// Frame `k` of a scene where person 1 walks down across the gate line (crossing at k = 10) and
/// person 2 walks up across it (crossing at k = 10), both starting inside the zone `top`.
fn crossing_frame(k: u64, offset: u64) -> gst::Buffer {
    let down = 0.3 + 0.02 * k as f64;
    let up = 0.7 - 0.02 * k as f64;
    tracked_frame(
        offset + k,
        &[((offset + 1) as i32, 0.3, down), ((offset + 2) as i32, 0.7, up)],
    )
}

/// The crossings among `events`, sorted, each once (QoS 1 may deliver twice across a reconnect).
fn cross_events(events: &[serde_json::Value]) -> Vec<(u64, String)> {
    let mut crossings = every_crossing(events);
    crossings.dedup();
    crossings
}

/// Every crossing message received, sorted.
fn every_crossing(events: &[serde_json::Value]) -> Vec<(u64, String)> {
    let mut crossings: Vec<(u64, String)> = events
        .iter()
        .filter(|e| e["type"] == "cross")
        .map(|e| {
            (
                e["object_id"].as_u64().unwrap(),
                e["direction"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    crossings.sort();
    crossings
}

/// Events, retained counts, availability and snapshots arrive at a real broker, each crossing
/// once with its direction.
#[test]
fn events_counts_and_snapshots_reach_a_real_broker() {
    init();
    let broker = Broker::start("mqtt-events", "");
    let subscriber = Subscriber::connect(broker.port, "reader");
    let snapshots = TempPath::new("mqtt-snapshots");
    let (mut h, bus, element) = events_harness(&[
        ("camera", "gate-cam".to_value()),
        ("lines", "gate:0.1,0.5 0.9,0.5".to_value()),
        ("zones", "top:0,0 1,0 1,0.5 0,0.5".to_value()),
        ("mqtt-broker", broker.url().to_value()),
        ("mqtt-topic", "site".to_value()),
        (
            "snapshot-dir",
            snapshots.to_path_buf().display().to_string().to_value(),
        ),
    ]);
    for k in 0..20 {
        // As crossing_frame's two, and a third person standing on the line, their box jittering
        // across it: never a crossing (nor inside the zone, whose border is the line).
        let jitter = [0.49, 0.51, 0.495, 0.505, 0.515, 0.485][k as usize % 6];
        let (down, up) = (0.3 + 0.02 * k as f64, 0.7 - 0.02 * k as f64);
        h.push(tracked_frame(
            k,
            &[(1, 0.3, down), (2, 0.7, up), (9, 0.5, jitter)],
        ))
        .unwrap();
    }
    let topic_value = |s: &Subscriber, topic: &str| s.latest().get(topic).cloned();
    let expected = [
        ("site/gate-cam/available", "online"),
        ("site/gate-cam/person", "3"),
        ("site/gate-cam/lines/gate/in", "1"),
        ("site/gate-cam/lines/gate/out", "1"),
        // Person 1 left the top zone, person 2 entered it.
        ("site/gate-cam/zones/top/person", "1"),
    ];
    assert!(
        subscriber.wait_for(10, |s| cross_events(&s.events()).len() == 2
            && expected
                .iter()
                .all(|(topic, value)| topic_value(s, topic).as_deref() == Some(*value))
            && s.messages()
                .iter()
                .any(|(t, _)| t == "site/gate-cam/person/snapshot")),
        "{:?}",
        subscriber.latest()
    );
    // Person 1 walks down: from the line's left (walking a to b, y down) to its right: in. Each
    // crossing arrives once; the jitter on the line is no crossing.
    assert_eq!(
        every_crossing(&subscriber.events()),
        vec![(1, "in".to_string()), (2, "out".to_string())]
    );
    let event = subscriber
        .events()
        .into_iter()
        .find(|e| e["type"] == "cross")
        .unwrap();
    assert_eq!(event["camera"], "gate-cam");
    assert_eq!(event["label"], "person");
    assert!(event["time"].as_f64().unwrap() > 1.7e9);
    // Snapshots: JPEGs on the broker and in the directory, announced on the bus.
    let (_, jpeg) = subscriber
        .messages()
        .into_iter()
        .find(|(t, _)| t == "site/gate-cam/person/snapshot")
        .unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let announced: Vec<String> = std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Element]))
        .filter_map(|m| {
            let s = m.structure()?;
            (s.name() == "detectevents-snapshot").then(|| s.get::<String>("location").unwrap())
        })
        .collect();
    assert!(!announced.is_empty());
    for location in &announced {
        assert_eq!(
            &std::fs::read(location).unwrap()[..2],
            &[0xFF, 0xD8],
            "{location}"
        );
    }
    assert_eq!(element.property::<String>("mqtt-status"), "connected");
    assert_eq!(element.property::<u64>("mqtt-dropped"), 0);
    // Stopping marks the camera offline (retained).
    drop(h);
    assert!(
        subscriber.wait_for(10, |s| topic_value(s, "site/gate-cam/available").as_deref()
            == Some("offline"))
    );
}

/// The broker dies mid-stream and comes back: every frame passes meanwhile without waiting, the
/// events of the outage arrive after it, and the retained counts are right on the new broker
/// (which lost everything when it died).
#[test]
fn a_broker_lost_mid_stream_costs_no_frame_and_events_resume() {
    init();
    let mut broker = Broker::start("mqtt-restart", "");
    let (mut h, bus, element) = events_harness(&[
        ("camera", "cam".to_value()),
        ("lines", "gate:0.1,0.5 0.9,0.5".to_value()),
        ("mqtt-broker", broker.url().to_value()),
        ("mqtt-snapshots", false.to_value()),
    ]);
    {
        let subscriber = Subscriber::connect(broker.port, "before");
        for k in 0..20 {
            h.push(crossing_frame(k, 0)).unwrap();
        }
        assert!(subscriber.wait_for(10, |s| cross_events(&s.events()).len() == 2));
    }
    broker.kill();
    // While the broker is away: two more people cross; no push waits for the network.
    let mut slowest = Duration::ZERO;
    for k in 0..20 {
        let started = Instant::now();
        h.push(crossing_frame(k, 10)).unwrap();
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        element
            .property::<String>("mqtt-status")
            .starts_with("unreachable")
    );
    let warning = warnings(&bus).join("\n");
    assert!(warning.contains(&broker.url()), "{warning}");
    broker.restart();
    let subscriber = Subscriber::connect(broker.port, "after");
    assert!(
        subscriber.wait_for(30, |s| s
            .latest()
            .get("asyncdetect/cam/lines/gate/in")
            .map(String::as_str)
            == Some("2")
            && cross_events(&s.events()).len() >= 2),
        "{:?} {}",
        subscriber.latest(),
        element.property::<String>("mqtt-status")
    );
    // The crossings made while the broker was down, delivered after it came back.
    assert_eq!(
        cross_events(&subscriber.events()),
        vec![(11, "in".to_string()), (12, "out".to_string())]
    );
    assert_eq!(
        subscriber
            .latest()
            .get("asyncdetect/cam/lines/gate/out")
            .map(String::as_str),
        Some("2")
    );
    // After it is back: events flow again.
    for k in 0..20 {
        h.push(crossing_frame(k, 20)).unwrap();
    }
    assert!(subscriber.wait_for(10, |s| cross_events(&s.events()).len() == 4));
    // Every frame came out.
    assert_eq!(h.buffers_received(), 60);
    assert_eq!(element.property::<u64>("mqtt-dropped"), 0);
    assert!(
        slowest < Duration::from_millis(500),
        "a push waited {slowest:?} for the broker"
    );
}

/// A wrong password is an error naming the broker and what is wrong, never the password; the
/// video keeps flowing. The right one is let in.
#[test]
fn a_wrong_password_is_a_clear_error() {
    init();
    let dir = TempPath::new("mqtt-users");
    std::fs::create_dir_all(&dir).unwrap();
    let passwords = dir.to_path_buf().join("passwords");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["camera", "right-secret"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success());
    let broker = Broker::start("mqtt-auth", &format!("password_file {}", passwords.display()));
    let (mut h, bus, _) = events_harness(&[
        ("mqtt-broker", broker.url().to_value()),
        ("mqtt-user", "camera".to_value()),
        ("mqtt-password", "wrong-secret".to_value()),
    ]);
    for k in 0..5 {
        h.push(crossing_frame(k, 0)).unwrap();
    }
    let error = wait_for_error(&bus, 10).expect("an error");
    assert!(error.contains(&broker.url()), "{error}");
    assert!(error.contains("user name or password"), "{error}");
    assert!(!error.contains("wrong-secret"), "{error}");
    assert_eq!(h.buffers_received(), 5);
    drop(h);

    let mut options = rumqttc::MqttOptions::new("reader", "127.0.0.1", broker.port);
    options.set_credentials("camera", "right-secret");
    let (client, mut connection) = rumqttc::Client::new(options, 10);
    client.subscribe("#", rumqttc::QoS::AtLeastOnce).unwrap();
    let (mut h, bus, _) = events_harness(&[
        ("lines", "gate:0.1,0.5 0.9,0.5".to_value()),
        ("mqtt-broker", broker.url().to_value()),
        ("mqtt-user", "camera".to_value()),
        ("mqtt-password", "right-secret".to_value()),
    ]);
    let pusher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        for k in 0..20 {
            h.push(crossing_frame(k, 0)).unwrap();
        }
        h
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut crossings = 0;
    while crossings < 2 && Instant::now() < deadline {
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) =
            connection.recv_timeout(Duration::from_millis(200))
            && p.topic == "asyncdetect/events"
            && String::from_utf8_lossy(&p.payload).contains("\"cross\"")
        {
            crossings += 1;
        }
    }
    let _h = pusher.join().unwrap();
    assert_eq!(crossings, 2);
    assert!(wait_for_error(&bus, 0).is_none());
}

/// `mqtts://` with the broker's certificate checked against a given authority.
#[test]
fn tls_to_a_broker_with_its_own_authority() {
    init();
    let dir = TempPath::new("mqtt-tls");
    let authority = test_authority(&dir);
    let file = |path: &std::path::Path| path.display().to_string();
    let broker = Broker::start(
        "mqtt-tls-broker",
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}",
            file(&authority.ca),
            file(&authority.certificate),
            file(&authority.key)
        ),
    );
    let url = format!("mqtts://localhost:{}", broker.port);
    let (mut h, bus, element) = events_harness(&[
        ("lines", "gate:0.1,0.5 0.9,0.5".to_value()),
        ("mqtt-broker", url.to_value()),
        ("mqtt-ca-file", file(&authority.ca).to_value()),
    ]);
    for k in 0..20 {
        h.push(crossing_frame(k, 0)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while element.property::<String>("mqtt-status") != "connected" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(element.property::<String>("mqtt-status"), "connected");
    assert!(wait_for_error(&bus, 0).is_none());
    drop(h);
    // Without the authority, the broker's certificate is refused: a warning, frames still pass.
    let (mut h, bus, element) = events_harness(&[("mqtt-broker", url.to_value())]);
    h.push(crossing_frame(0, 0)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !element
        .property::<String>("mqtt-status")
        .starts_with("unreachable")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let warning = warnings(&bus).join("\n");
    assert!(warning.contains(&url), "{warning}");
    assert_eq!(h.buffers_received(), 1);
}

/// A broker URL that cannot be one fails the start, naming it.
#[test]
fn a_bad_broker_url_fails_the_start() {
    init();
    let element = gst::ElementFactory::make("detectevents")
        .property("mqtt-broker", "http://127.0.0.1:1883")
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err());
    let error = wait_for_error(&bus, 1).expect("an error");
    assert!(error.contains("http://127.0.0.1:1883"), "{error}");
    let _ = element.set_state(gst::State::Null);
}

/// On a real clip, the crossing events published are those posted on the bus.
#[test]
fn a_real_clip_publishes_what_the_bus_reports() {
    init();
    let broker = Broker::start("mqtt-clip", "");
    let subscriber = Subscriber::connect(broker.port, "clip-reader");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! asyncdetect mode=sync tracking=iou ! \
         detectevents camera=bikes lines=\"middle:0.5,0.0 0.5,1.0\" mqtt-broker={} mqtt-detections=true ! \
         fakesink sync=false",
        demo_clip().display(),
        broker.url()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut posted = Vec::new();
    for message in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            gst::MessageView::Element(_) => {
                if let Some(s) = message.structure().filter(|s| s.name() == "detectevents")
                    && s.get::<String>("event").unwrap() == "cross"
                {
                    posted.push((
                        u64::from(s.get::<u32>("object-id").unwrap()),
                        s.get::<String>("direction").unwrap(),
                    ));
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    posted.sort();
    assert!(!posted.is_empty(), "nobody crossed");
    assert!(subscriber.wait_for(10, |s| cross_events(&s.events()) == posted));
    // Per-frame detections, in detectexport's layout.
    let detections: Vec<serde_json::Value> = subscriber
        .messages()
        .iter()
        .filter(|(t, _)| t == "asyncdetect/bikes/detections")
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect();
    assert!(
        detections.len() > 100,
        "{} frames of detections",
        detections.len()
    );
    assert!(detections.iter().any(|d| {
        d["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["detection"]["label"] == "person")
    }));
}

/// The width and height a baseline JPEG's frame header gives.
fn jpeg_size(jpeg: &[u8]) -> (u16, u16) {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    (
        u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]),
        u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]),
    )
}

/// Snapshots without a broker: written to a directory that keeps only the newest, whole frames
/// with `snapshot-crop=false`, cropped around the object by default.
#[test]
fn snapshots_are_written_with_bounded_retention() {
    init();
    for crop in [false, true] {
        let dir = TempPath::new(&format!("snapshot-retention-{crop}"));
        let (mut h, bus, _) = events_harness(&[
            ("snapshot-dir", dir.display().to_string().to_value()),
            ("snapshot-max-files", 2u32.to_value()),
            ("snapshot-crop", crop.to_value()),
        ]);
        // A new person on each frame: a start event, so a snapshot, each time (the encoder is
        // given time to take each frame).
        let mut announced = Vec::new();
        for k in 0..5u64 {
            h.push(tracked_frame(k, &[(k as i32 + 1, 0.2 + 0.1 * k as f64, 0.6)]))
                .unwrap();
            // The start event's message comes first, then the snapshot's.
            let snapshot = std::iter::from_fn(|| {
                bus.timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Element])
            })
            .find(|m| m.structure().unwrap().name() == "detectevents-snapshot")
            .expect("a snapshot message");
            announced.push(snapshot.structure().unwrap().get::<String>("location").unwrap());
        }
        assert_eq!(announced.len(), 5);
        let mut kept: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        kept.sort();
        // The newest two, by their names' time.
        assert_eq!(kept, announced[3..].to_vec());
        let (width, height) = jpeg_size(&std::fs::read(&kept[1]).unwrap());
        if crop {
            // A 32x48 box with a quarter around it each side, at least 96 px.
            assert_eq!((width, height), (96, 96));
        } else {
            assert_eq!((width, height), (320, 240));
        }
    }
}
