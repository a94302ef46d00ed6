//! Publishing to an MQTT broker without ever holding up the caller.
//!
//! `Publisher::publish` only pushes a message on a bounded lock-free queue: when the queue is full
//! the message is dropped and counted, so a broker that is down, slow or lost never blocks the
//! streaming thread, which neither waits for a lock the connection thread holds nor wakes it. A
//! thread of its own polls the queue and drives the connection: it reconnects with back-off, holds
//! events while the broker is away (up to the same bound), sends again what was in flight when a
//! connection died, and re-sends the newest value of every retained topic after each connect, so
//! retained state is right again after a broker restart. No GStreamer types here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use rumqttc::{
    Client, ConnectReturnCode, Connection, ConnectionError, Event, LastWill, MqttOptions, Packet, Publish,
    QoS, Request, TlsConfiguration, Transport,
};

use crate::backoff::Backoff;
use crate::lock;

/// Snapshots are JPEG pictures: far above the client's default packet limit.
const MAX_PACKET: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT_S: u64 = 3;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long the connection thread waits for the network before looking at its queue again: the
/// most a queued message waits for it (it polls: waking it could preempt the video).
const POLL: Duration = Duration::from_millis(5);
/// Messages handed to the client at a time (it holds them until the network takes them).
const CLIENT_CHANNEL: usize = 64;
/// Above zero selects batch scheduling, whose threads never preempt on wake-up.
const CONNECTION_NICE: i32 = 1;

/// Where and as whom to connect.
#[derive(Clone, Default)]
pub struct BrokerConfig {
    /// The broker as the user gave it, for messages (never holds a password).
    pub url: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// PEM file of the authorities that sign the broker's certificate (`mqtts://`); the system's
    /// roots when `None`.
    pub ca_file: Option<String>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Topic and payload the broker publishes (retained) if the connection dies.
    pub last_will: Option<(String, String)>,
    /// Messages that may wait for the broker; beyond that they are dropped and counted.
    pub queue: usize,
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl BrokerConfig {
    /// Reads `mqtt://host[:port]` or `mqtts://host[:port]` (also `tcp://`, `ssl://`).
    /// Credentials belong in their own settings: a URL carrying a password would end up in logs.
    pub fn from_url(url: &str) -> Result<BrokerConfig, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("'{url}' is not a broker URL: {e}"))?;
        let tls = match parsed.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(format!(
                    "'{url}': unknown scheme '{other}' (use mqtt://host:port or mqtts://host:port)"
                ));
            }
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("the broker URL must not carry a user or password: set them on their own".into());
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(host) => host.to_string(),
            None => return Err(format!("'{url}' names no host")),
        };
        if parsed.path().len() > 1 || parsed.query().is_some() {
            return Err(format!("'{url}': a broker URL has no path or query"));
        }
        Ok(BrokerConfig {
            url: url.to_string(),
            host,
            port: parsed.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            queue: 1000,
            ..BrokerConfig::default()
        })
    }

    fn options(&self) -> Result<MqttOptions, String> {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        options.set_keep_alive(KEEP_ALIVE);
        options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some(user) = &self.username {
            options.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some((topic, payload)) = &self.last_will {
            options.set_last_will(LastWill::new(
                topic.clone(),
                payload.clone(),
                QoS::AtLeastOnce,
                true,
            ));
        }
        if self.tls {
            options.set_transport(Transport::tls_with_config(self.tls_config()?));
        }
        Ok(options)
    }

    fn tls_config(&self) -> Result<TlsConfiguration, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read CA file '{path}': {e}"))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("CA file '{path}' is not PEM: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("CA file '{path}' holds a bad certificate: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("CA file '{path}' holds no certificate"));
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err("no system root certificates found: give a CA file".into());
                }
            }
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConfiguration::Rustls(Arc::new(config)))
    }
}

/// How a message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// At least once (QoS 1): events.
    Event,
    /// At least once and retained, and re-sent after every connect: counts, availability,
    /// snapshots. While the broker is away only the newest value per topic is kept.
    State,
    /// At most once (QoS 0): per-frame detections, where the next frame replaces a lost one.
    Stream,
}

/// What the connection thread reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Connected,
    /// Cannot reach the broker or lost it (reported once per outage).
    Unreachable(String),
    /// The broker refused us: user, password or client id.
    Refused(String),
}

/// Counters, read at any time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Handed to the network.
    pub sent: u64,
    /// Dropped because the queue was full.
    pub dropped: u64,
}

/// A message on its way to the connection thread.
struct Outgoing {
    topic: String,
    payload: Vec<u8>,
    delivery: Delivery,
}

struct Shared {
    /// Lock-free: queuing never waits for the connection thread, whatever it is doing.
    queue: ArrayQueue<Outgoing>,
    stopping: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// A connection to one broker: the connection thread and a handle to queue messages.
pub struct Publisher {
    sender: MessageSender,
    finished: Mutex<mpsc::Receiver<()>>,
}

/// Queues messages for a broker; cheap to clone, for other threads that publish.
#[derive(Clone)]
pub struct MessageSender {
    shared: Arc<Shared>,
}

impl Publisher {
    /// Starts the connection thread; `on_status` is called from it.
    pub fn start(config: &BrokerConfig, on_status: Box<dyn Fn(Status) + Send>) -> Result<Publisher, String> {
        let options = config.options()?;
        let (client, mut connection) = Client::new(options, CLIENT_CHANNEL);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_connection_timeout(CONNECT_TIMEOUT_S);
        connection.eventloop.set_network_options(network);
        let queue = config.queue.max(1);
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(queue),
            stopping: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let (finished_tx, finished) = mpsc::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                // Batch scheduling: woken, this thread never preempts the video's threads.
                let _ = crate::priority::lower_priority(CONNECTION_NICE);
                Connector {
                    client,
                    connection,
                    shared: &thread_shared,
                    bound: queue,
                    on_status: &*on_status,
                }
                .run();
                let _ = finished_tx.send(());
            })
            .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        Ok(Publisher {
            sender: MessageSender { shared },
            finished: Mutex::new(finished),
        })
    }

    pub fn sender(&self) -> MessageSender {
        self.sender.clone()
    }

    /// Queues a message; never blocks. Returns false when it was dropped.
    pub fn publish(&self, topic: &str, payload: Vec<u8>, delivery: Delivery) -> bool {
        self.sender.publish(topic, payload, delivery)
    }

    pub fn counters(&self) -> Counters {
        self.sender.counters()
    }

    /// Sends what is queued and disconnects cleanly, waiting at most `wait` (an unreachable broker
    /// is then left behind: its thread ends by itself).
    pub fn stop(&self, wait: Duration) {
        self.sender.shared.stopping.store(true, Ordering::Release);
        let _ = lock(&self.finished).recv_timeout(wait);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.sender.shared.stopping.store(true, Ordering::Release);
    }
}

impl MessageSender {
    /// Queues a message: a lock-free push, never a wait. Returns false when the queue was full
    /// and the message dropped (and counted).
    pub fn publish(&self, topic: &str, payload: Vec<u8>, delivery: Delivery) -> bool {
        let message = Outgoing {
            topic: topic.to_string(),
            payload,
            delivery,
        };
        if self.shared.queue.push(message).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn counters(&self) -> Counters {
        Counters {
            sent: self.shared.sent.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }
}

fn describe(error: &ConnectionError) -> Status {
    match error {
        ConnectionError::ConnectionRefused(code) => Status::Refused(
            match code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                // What Mosquitto answers to a wrong password too.
                ConnectReturnCode::NotAuthorized => "not authorised (wrong user name or password?)",
                ConnectReturnCode::BadClientId => "client id refused",
                ConnectReturnCode::RefusedProtocolVersion => "MQTT 3.1.1 not supported",
                ConnectReturnCode::ServiceUnavailable => "service unavailable",
                ConnectReturnCode::Success => "refused",
            }
            .to_string(),
        ),
        other => Status::Unreachable(other.to_string()),
    }
}

fn publish_packet(topic: String, payload: Vec<u8>, delivery: Delivery) -> Publish {
    let qos = match delivery {
        Delivery::Event | Delivery::State => QoS::AtLeastOnce,
        Delivery::Stream => QoS::AtMostOnce,
    };
    let mut publish = Publish::new(topic, qos, payload);
    publish.retain = delivery == Delivery::State;
    publish
}

/// The connection thread: takes what was queued, keeps the newest value of every retained topic,
/// holds events while the broker is away, and drives the client.
struct Connector<'a> {
    client: Client,
    connection: Connection,
    shared: &'a Shared,
    bound: usize,
    on_status: &'a dyn Fn(Status),
}

impl Connector<'_> {
    fn run(mut self) {
        let mut retained: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        // Ready to hand to the client, oldest first: events kept while the broker is away (and
        // what was in flight when a connection died), then whatever arrives.
        let mut waiting: VecDeque<Publish> = VecDeque::new();
        let mut connected = false;
        let mut backoff = Backoff::default();
        let mut retry_at: Option<Instant> = None;
        let mut outage_reported = false;
        let mut ever_connected = false;
        let mut disconnecting = false;
        loop {
            while let Some(message) = self.shared.queue.pop() {
                if message.delivery == Delivery::State {
                    retained.insert(message.topic.clone(), message.payload.clone());
                    // While away only the newest value counts: it is sent on connecting.
                    if !connected {
                        continue;
                    }
                }
                if connected || message.delivery == Delivery::Event {
                    waiting.push_back(publish_packet(message.topic, message.payload, message.delivery));
                } else {
                    // At most once: a frame's detections are not kept for a broker that is away.
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            if waiting.len() > self.bound {
                let excess = waiting.len() - self.bound;
                waiting.drain(..excess);
                self.shared.dropped.fetch_add(excess as u64, Ordering::Relaxed);
            }
            if connected {
                while let Some(publish) = waiting.pop_front() {
                    let Publish {
                        topic,
                        qos,
                        retain,
                        payload,
                        ..
                    } = publish;
                    if let Err(rumqttc::ClientError::TryRequest(Request::Publish(back))) =
                        self.client.try_publish(topic, qos, retain, payload)
                    {
                        // The client's channel is full: the rest waits for the next turn.
                        waiting.push_front(back);
                        break;
                    }
                }
            }
            let stopping = self.shared.stopping.load(Ordering::Acquire);
            if stopping && !connected {
                break;
            }
            if stopping && waiting.is_empty() && self.shared.queue.is_empty() && !disconnecting {
                let _ = self.client.try_disconnect();
                disconnecting = true;
            }
            if let Some(at) = retry_at {
                if Instant::now() < at {
                    std::thread::sleep(POLL);
                    continue;
                }
                retry_at = None;
            }
            // Connected, a short wait so queued messages go out soon; connecting, long enough for
            // the whole handshake (an interrupted connect starts over).
            let wait = if connected {
                POLL
            } else {
                Duration::from_secs(CONNECT_TIMEOUT_S + 1)
            };
            let event = match self.connection.recv_timeout(wait) {
                Ok(event) => event,
                Err(rumqttc::RecvTimeoutError::Timeout) => continue,
                Err(rumqttc::RecvTimeoutError::Disconnected) => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    backoff.reset();
                    // Retained state first (newest values), then the held events in order.
                    let mut resend: VecDeque<Publish> = retained
                        .iter()
                        .map(|(topic, payload)| {
                            publish_packet(topic.clone(), payload.clone(), Delivery::State)
                        })
                        .collect();
                    resend.append(&mut waiting);
                    waiting = resend;
                    if outage_reported || !ever_connected {
                        (self.on_status)(Status::Connected);
                    }
                    outage_reported = false;
                    ever_connected = true;
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                    self.shared.sent.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(error) => {
                    connected = false;
                    // What was in flight or not yet written goes first next time; retained values
                    // are sent from `retained` anyway.
                    let unsent: Vec<Publish> = self
                        .connection
                        .eventloop
                        .pending
                        .drain(..)
                        .filter_map(|request| match request {
                            Request::Publish(publish) if !publish.retain => Some(publish),
                            _ => None,
                        })
                        .collect();
                    for publish in unsent.into_iter().rev() {
                        waiting.push_front(publish);
                    }
                    if self.shared.stopping.load(Ordering::Acquire) {
                        break;
                    }
                    if !outage_reported {
                        (self.on_status)(describe(&error));
                        outage_reported = true;
                    }
                    retry_at = Some(Instant::now() + backoff.next_wait());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let plain = BrokerConfig::from_url("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.tls),
            ("127.0.0.1", 1884, false)
        );
        let tls = BrokerConfig::from_url("mqtts://broker.example").unwrap();
        assert_eq!((tls.port, tls.tls), (8883, true));
        assert_eq!(BrokerConfig::from_url("tcp://[::1]").unwrap().host, "::1");
        assert!(
            BrokerConfig::from_url("http://host")
                .unwrap_err()
                .contains("unknown scheme")
        );
        assert!(BrokerConfig::from_url("host:1883").is_err());
        let with_password = BrokerConfig::from_url("mqtt://user:secret@host").unwrap_err();
        assert!(!with_password.contains("secret"), "{with_password}");
    }

    #[test]
    fn a_password_is_never_printed() {
        let mut config = BrokerConfig::from_url("mqtt://host").unwrap();
        config.password = Some("hunter2".into());
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn publishing_never_blocks_without_a_broker() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = BrokerConfig::from_url(&format!("mqtt://127.0.0.1:{port}")).unwrap();
        config.client_id = "test".into();
        config.queue = 10;
        let (status_tx, status_rx) = mpsc::channel();
        let publisher = Publisher::start(&config, Box::new(move |s| drop(status_tx.send(s)))).unwrap();
        let started = std::time::Instant::now();
        let queued = (0..100)
            .filter(|i| publisher.publish("t", vec![*i as u8], Delivery::Event))
            .count();
        assert!(started.elapsed() < Duration::from_secs(1));
        // The queue holds 10 and the connection thread keeps at most 10 more.
        assert!(queued <= 20, "{queued} queued");
        assert!(publisher.counters().dropped >= 80);
        assert!(matches!(
            status_rx.recv_timeout(Duration::from_secs(10)),
            Ok(Status::Unreachable(_))
        ));
        publisher.stop(Duration::from_secs(2));
    }
}
