//! A dropped listener frees its port at once. In its own test binary, with a single test: in
//! a binary whose tests run in parallel, another test could take the freed ephemeral port
//! between the drop and the bind again.

use ringloop::net::TcpListener;

/// A listener dropped (after its multishot accept was armed) frees its port at once: binding
/// the address again right away succeeds, as a restarted server needs.
#[test]
fn a_dropped_listener_frees_its_port_at_once() {
    ringloop::run(async {
        for i in 0..100 {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let client = std::net::TcpStream::connect(addr).unwrap();
            let _accepted = listener.accept().await.unwrap();
            drop(listener);
            if let Err(e) = std::net::TcpListener::bind(addr) {
                panic!("round {i}: the port is still held: {e}");
            }
            drop(client);
        }
    });
}
