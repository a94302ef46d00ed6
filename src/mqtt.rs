//! Publishing to an MQTT broker without ever holding up the caller.
//!
//! `Publisher::publish` only puts a message on a bounded queue (the MQTT client's request
//! channel): when the queue is full the message is dropped and counted, so a broker that is down,
//! slow or lost never blocks the streaming thread. A thread of its own drives the connection,
//! reconnects with back-off, keeps what was in flight when a connection died and sends it again on
//! the next one, and re-sends the newest value of every retained topic after each connect, so
//! retained state is right again after a broker restart. No GStreamer types here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    Client, ConnectReturnCode, Connection, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS, Request, TlsConfiguration, Transport,
};

use crate::lock;

const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(8);
/// Snapshots are JPEG pictures: far above the client's default packet limit.
const MAX_PACKET: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT_S: u64 = 3;
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
    pub connected: bool,
}

#[derive(Default)]
struct Shared {
    retained: Mutex<BTreeMap<String, Vec<u8>>>,
    connected: AtomicBool,
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
    client: Client,
    shared: Arc<Shared>,
}

impl Publisher {
    /// Starts the connection thread; `on_status` is called from it.
    pub fn start(config: &BrokerConfig, on_status: Box<dyn Fn(Status) + Send>) -> Result<Publisher, String> {
        let options = config.options()?;
        let (client, mut connection) = Client::new(options, config.queue.max(1));
        let mut network = rumqttc::NetworkOptions::new();
        network.set_connection_timeout(CONNECT_TIMEOUT_S);
        connection.eventloop.set_network_options(network);
        let shared = Arc::new(Shared::default());
        let (finished_tx, finished) = mpsc::channel();
        let thread_shared = shared.clone();
        let queue = config.queue.max(1);
        std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                run_connection(connection, &thread_shared, queue, &*on_status);
                let _ = finished_tx.send(());
            })
            .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        Ok(Publisher {
            sender: MessageSender { client, shared },
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
        if !self.sender.shared.stopping.swap(true, Ordering::AcqRel) {
            let _ = self.sender.client.try_disconnect();
        }
        let _ = lock(&self.finished).recv_timeout(wait);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if !self.sender.shared.stopping.swap(true, Ordering::AcqRel) {
            let _ = self.sender.client.try_disconnect();
        }
    }
}

impl MessageSender {
    /// Queues a message; never blocks. Returns false when it was dropped.
    pub fn publish(&self, topic: &str, payload: Vec<u8>, delivery: Delivery) -> bool {
        let (qos, retain) = match delivery {
            Delivery::Event => (QoS::AtLeastOnce, false),
            Delivery::State => (QoS::AtLeastOnce, true),
            Delivery::Stream => (QoS::AtMostOnce, false),
        };
        if delivery == Delivery::State {
            lock(&self.shared.retained).insert(topic.to_string(), payload.clone());
            // The connect re-sends the newest value; queued now it could arrive after that one.
            if !self.shared.connected.load(Ordering::Acquire) {
                return true;
            }
        }
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => true,
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn counters(&self) -> Counters {
        Counters {
            sent: self.shared.sent.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            connected: self.shared.connected.load(Ordering::Acquire),
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

/// Drives the connection until the publisher is gone.
fn run_connection(mut connection: Connection, shared: &Shared, queue: usize, on_status: &dyn Fn(Status)) {
    let mut retry = FIRST_RETRY;
    let mut outage_reported = false;
    let mut ever_connected = false;
    // Messages that were in flight or queued when a connection died, sent first on the next.
    let mut carried: Vec<Publish> = Vec::new();
    loop {
        let event = match connection.recv() {
            Ok(event) => event,
            // Every sender is gone and nothing is left to send.
            Err(_) => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                retry = FIRST_RETRY;
                let pending = &mut connection.eventloop.pending;
                pending.retain(|request| matches!(request, Request::Publish(p) if !p.retain));
                pending.extend(carried.drain(..).map(Request::Publish));
                shared.connected.store(true, Ordering::Release);
                let retained = lock(&shared.retained).clone();
                for (topic, payload) in retained {
                    let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
                    publish.retain = true;
                    pending.push_back(Request::Publish(publish));
                }
                if outage_reported || !ever_connected {
                    on_status(Status::Connected);
                }
                outage_reported = false;
                ever_connected = true;
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(error) => {
                shared.connected.store(false, Ordering::Release);
                // Retained values are re-sent from the newest on the next connect.
                carried.extend(
                    connection
                        .eventloop
                        .pending
                        .drain(..)
                        .filter_map(|request| match request {
                            Request::Publish(publish) if !publish.retain => Some(publish),
                            _ => None,
                        }),
                );
                if carried.len() > queue {
                    let excess = carried.len() - queue;
                    carried.drain(..excess);
                    shared.dropped.fetch_add(excess as u64, Ordering::Relaxed);
                }
                if shared.stopping.load(Ordering::Acquire) {
                    break;
                }
                if !outage_reported {
                    on_status(describe(&error));
                    outage_reported = true;
                }
                // Back off, but wake for a stop.
                let mut waited = Duration::ZERO;
                while waited < retry && !shared.stopping.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                    waited += Duration::from_millis(50);
                }
                if shared.stopping.load(Ordering::Acquire) {
                    break;
                }
                retry = (retry * 2).min(LAST_RETRY);
            }
        }
    }
    shared.connected.store(false, Ordering::Release);
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
        assert!(queued <= 11, "{queued} queued");
        assert!(publisher.counters().dropped >= 89);
        assert!(matches!(
            status_rx.recv_timeout(Duration::from_secs(10)),
            Ok(Status::Unreachable(_))
        ));
        publisher.stop(Duration::from_secs(2));
    }
}
