mod support;
use support::{client, start};
#[tokio::test]
async fn probe_huge() {
    let s = start("otlp/huge", |c| c.max_request_body_size = tracecast_config::ByteSize::mib(1)).await;
    for n in [8usize, 32] {
        let r = client().post(&s.url).header("content-type","application/x-protobuf").body(vec![0u8; n*1024*1024]).send().await;
        println!("{n} MiB: {:?}", r.map(|r| r.status()));
    }
}
