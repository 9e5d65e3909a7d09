//! An HTTP/1.1 server with hyper on every core, and a graceful stop.
//!
//! ```text
//! cargo run --release --features hyper --example http_server -- [ADDR]
//! curl http://127.0.0.1:8080/
//! curl --data-binary @some-file http://127.0.0.1:8080/echo
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:8080`. `GET /` answers `Hello, World!`; `POST /echo` streams
//! the request body back as it arrives. One shard per CPU, each with its own `SO_REUSEPORT`
//! listener. On SIGINT or SIGTERM every shard stops accepting (its listener is closed at
//! once, so the port is free), asks its open connections to finish (hyper's graceful
//! shutdown: the request in progress completes, keep-alive ends), waits up to 5 s for them,
//! and the process exits with status 0.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use ringloop::hyper::{Io, Timer};
use ringloop::net::TcpListener;
use ringloop::signal::Signal;
use ringloop::{Promise, ReturnWhen, ShardedRuntime};

/// How long in-flight connections get to finish after a stop signal.
const GRACE: Duration = Duration::from_secs(5);

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let rt = ShardedRuntime::new(0)?;
    eprintln!("serving http://{addr}/ on {} shards", rt.shards());
    let served = rt.run(move |shard| serve(shard, addr.clone()));
    let total: usize = served.iter().sum();
    eprintln!("stopped after {total} connections");
    Ok(())
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let text = |status, s: &'static str| {
        let mut res = Response::new(
            Full::new(Bytes::from(s))
                .map_err(|e| match e {})
                .boxed_unsync(),
        );
        *res.status_mut() = status;
        res
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => text(StatusCode::OK, "Hello, World!\n"),
        // The body streams back as it arrives: hyper polls the request body for each chunk
        // of the response.
        (&Method::POST, "/echo") => Response::new(req.into_body().boxed_unsync()),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    })
}

/// One shard: accepts until SIGINT or SIGTERM, then stops gracefully. Returns how many
/// connections it served.
async fn serve(shard: usize, addr: String) -> usize {
    // Listen before binding, so a signal that comes early is not missed.
    let mut sigint = Signal::new(libc::SIGINT).expect("SIGINT");
    let mut sigterm = Signal::new(libc::SIGTERM).expect("SIGTERM");
    let listener = TcpListener::bind_reuse_port(addr.as_str())
        .unwrap_or_else(|e| panic!("shard {shard}: bind {addr}: {e}"));
    // Resolved when the shard stops: every connection then shuts down gracefully.
    let stopping = Promise::<()>::new();
    let mut connections = Vec::new();
    let mut accepted = 0;
    {
        let mut int = pin!(sigint.recv());
        let mut term = pin!(sigterm.recv());
        let mut stop = pin!(std::future::poll_fn(|cx| {
            if int.as_mut().poll(cx).is_ready() || term.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        loop {
            let mut accept = pin!(listener.accept());
            let next = std::future::poll_fn(|cx| match stop.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => accept.as_mut().poll(cx).map(Some),
            })
            .await;
            let Some(result) = next else { break };
            let (stream, _peer) = match result {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("shard {shard}: accept: {e}");
                    ringloop::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            accepted += 1;
            let _ = stream.set_nodelay(true);
            let stopping = stopping.clone();
            connections.push(ringloop::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(Timer)
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(Io::new(stream), hyper::service::service_fn(handle));
                let mut conn = pin!(conn);
                let mut stopping = pin!(stopping.wait());
                let mut asked = false;
                let _ = std::future::poll_fn(|cx| {
                    if !asked && stopping.as_mut().poll(cx).is_ready() {
                        asked = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    conn.as_mut().poll(cx)
                })
                .await;
            }));
            // Forget the connections that are done.
            connections.retain(|t: &ringloop::Task<()>| !t.is_done());
        }
    }
    // Stop accepting: the listener closes now, and the port with it.
    drop(listener);
    let _ = stopping.set_result(());
    let (_done, late) = ringloop::wait(connections, Some(GRACE), ReturnWhen::AllCompleted).await;
    for t in &late {
        t.cancel();
    }
    accepted
}
