//! What one client connection may hold of the server (`[http]`): half a request, a trickled
//! body, an idle kept-alive connection and one connection too many are all cut off. The limits
//! are set small so each test waits for the server to act, never for a fixed time.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TempPack;
use super::harness::TestServer;

/// Upper bound on waiting for the server to act on a limit of a fraction of a second; only a
/// server without the limit comes near it.
const PATIENCE: Duration = Duration::from_secs(10);

async fn start(configure: impl FnOnce(&mut jitgate::config::HttpConfig)) -> TestServer {
    TestServer::start(TempPack::shipped(), |c| configure(&mut c.http)).await
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection (panics if it does not within
/// [`PATIENCE`]).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server kept the connection open past its limit");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn half_sent_headers_are_cut_off() {
    let server = start(|http| http.header_read_timeout = Duration::from_millis(300)).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: jitgate\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream).await;
    assert!(!received.contains("200 OK"), "{received}");

    // A connection that sends nothing at all is cut off the same way.
    let mut silent = connect(&server).await;
    read_until_closed(&mut silent).await;
}

#[tokio::test]
async fn a_trickled_body_is_answered_408() {
    let server = start(|http| http.body_read_timeout = Duration::from_millis(300)).await;
    let token = server.dev_token("alice", &["oncall"], true);
    let mut stream = connect(&server).await;
    let head = format!(
        "POST /v1/decisions HTTP/1.1\r\nHost: jitgate\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"action\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let received = read_until_closed(&mut stream).await;
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(received.contains("request_timeout"), "{received}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = start(|http| http.idle_timeout = Duration::from_millis(300)).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: jitgate\r\n\r\n")
        .await
        .unwrap();
    // Answered, then closed once idle, although the client asked for nothing to end.
    let received = read_until_closed(&mut stream).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(!received.contains("connection: close"), "{received}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_until_one_ends() {
    let server = start(|http| http.max_connections = 3).await;
    // The harness's client keeps one connection (it asked /readyz); two more, each proven open
    // by an answered request, kept alive.
    let ready = server.get("/readyz", None).await;
    assert!(ready.status().is_success());
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&server).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: jitgate\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let mut third = connect(&server).await;
    // The write may already fail once the server has closed the socket.
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: jitgate\r\n\r\n")
        .await;
    let received = read_until_closed(&mut third).await;
    assert_eq!(received, "", "a fourth connection was served");

    // One ends; a new connection is served (once the server has seen the close).
    drop(held.pop());
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut stream = connect(&server).await;
            let _ = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: jitgate\r\nConnection: close\r\n\r\n")
                .await;
            if read_until_closed(&mut stream)
                .await
                .starts_with("HTTP/1.1 200")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "no connection was served after one ended");
}
