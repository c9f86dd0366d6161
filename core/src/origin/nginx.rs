//! nginx-rtmp: its control module (`rtmp_control all;` in an HTTP `location /control`),
//! `GET /control/drop/publisher?app=…&name=…`, and its stat module (`rtmp_stat all;` in a
//! `location /stat`), whose XML lists the streams with their media.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    AudioTrack, MediaStats, OriginControl, OriginError, OriginStreams, StreamMedia, StreamRef,
    VideoTrack,
};

/// The control (and stat) handlers of one nginx-rtmp server.
#[derive(Debug, Clone)]
pub struct NginxRtmpControl {
    client: reqwest::Client,
    base: String,
    stat: Option<String>,
}

impl NginxRtmpControl {
    /// A client for the control handler under `base` (the URL its `location` serves, e.g.
    /// `http://127.0.0.1:8081/control`).
    pub fn new(base: &str, timeout: Duration) -> Result<Self, OriginError> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_owned(),
            stat: None,
        })
    }

    /// Reads media statistics from the stat handler at `url` (e.g.
    /// `http://127.0.0.1:8081/stat`).
    pub fn with_stat_url(mut self, url: &str) -> Self {
        self.stat = Some(url.to_owned());
        self
    }
}

/// The text of `node`'s child element `name`.
fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|child| child.has_tag_name(name))
        .and_then(|child| child.text())
        .map(str::trim)
}

fn child<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<roxmltree::Node<'a, 'a>> {
    node.children().find(|child| child.has_tag_name(name))
}

/// The streams of the stat module's XML (`<rtmp><server><application><live><stream>`) that
/// have a publisher.
pub fn parse_stat(xml: &str) -> Result<MediaStats, OriginError> {
    let document =
        roxmltree::Document::parse(xml).map_err(|err| OriginError::Malformed(err.to_string()))?;
    let root = document.root_element();
    if !root.has_tag_name("rtmp") {
        return Err(OriginError::Malformed(
            "the stat answer is not an <rtmp> document".to_owned(),
        ));
    }
    let mut streams = Vec::new();
    for application in root
        .descendants()
        .filter(|node| node.has_tag_name("application"))
    {
        let app = child_text(application, "name").unwrap_or_default();
        let Some(live) = child(application, "live") else {
            continue;
        };
        for stream in live.children().filter(|node| node.has_tag_name("stream")) {
            let publisher = stream
                .children()
                .filter(|node| node.has_tag_name("client"))
                .find(|client| child(*client, "publishing").is_some());
            let Some(publisher) = publisher else {
                continue;
            };
            let number = |node, name| child_text(node, name).and_then(|t| t.parse::<u64>().ok());
            let meta = child(stream, "meta");
            let video = meta.and_then(|meta| child(meta, "video")).map(|video| {
                let size = |name| number(video, name).and_then(|n| u32::try_from(n).ok());
                VideoTrack {
                    codec: child_text(video, "codec").unwrap_or_default().to_owned(),
                    width: size("width"),
                    height: size("height"),
                }
            });
            let audio = meta
                .and_then(|meta| child(meta, "audio"))
                .map(|audio| AudioTrack {
                    codec: child_text(audio, "codec").unwrap_or_default().to_owned(),
                });
            let clients = number(stream, "nclients");
            streams.push(StreamMedia {
                vhost: None,
                app: app.to_owned(),
                name: child_text(stream, "name").unwrap_or_default().to_owned(),
                publisher: child_text(publisher, "id").map(str::to_owned),
                publisher_addr: child_text(publisher, "address").map(str::to_owned),
                video,
                audio,
                // `bw_in` is bits per second.
                bitrate_kbps: number(stream, "bw_in").map(|bits| bits / 1000),
                // `nclients` counts the publisher too.
                readers: clients.map(|n| n.saturating_sub(1)),
            });
        }
    }
    Ok(MediaStats { streams })
}

#[async_trait]
impl OriginControl for NginxRtmpControl {
    async fn streams(&self) -> Result<OriginStreams, OriginError> {
        // The control module lists nothing; only the stat module does, as XML.
        Err(OriginError::Unsupported("listing streams"))
    }

    async fn kick(&self, stream: &StreamRef<'_>) -> Result<(), OriginError> {
        // The module answers 200 with the number of dropped connections, and an empty 2xx when
        // it found none: either way the publisher is gone.
        self.client
            .get(format!("{}/drop/publisher", self.base))
            .query(&[("app", stream.app.unwrap_or("live")), ("name", stream.name)])
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn stats(&self) -> Result<MediaStats, OriginError> {
        let url = self.stat.as_deref().ok_or(OriginError::Unsupported(
            "media statistics (no stat URL configured)",
        ))?;
        let xml = self
            .client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        parse_stat(&xml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_xml_gives_each_published_streams_media() {
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n\
            <?xml-stylesheet type=\"text/xsl\" href=\"stat.xsl\" ?>\n\
            <rtmp><nginx_version>1.26.3</nginx_version><server><application><name>live</name>\
            <live><stream><name>42</name><time>5003</time><bw_in>412000</bw_in>\
            <bytes_in>260000</bytes_in><bw_video>340000</bw_video>\
            <client><id>7</id><address>127.0.0.1</address><time>5100</time>\
            <flashver>FMLE/3.0 (compatible; Lavf61.7.100)</flashver><dropped>0</dropped>\
            <publishing/><active/></client>\
            <client><id>9</id><address>10.0.0.2</address></client>\
            <meta><video><width>320</width><height>240</height><frame_rate>25</frame_rate>\
            <codec>H264</codec><profile>High 4:4:4</profile></video>\
            <audio><codec>AAC</codec><channels>1</channels></audio></meta>\
            <nclients>2</nclients><publishing/><active/></stream>\
            <stream><name>43</name><client><id>8</id><address>10.0.0.3</address></client>\
            <nclients>1</nclients></stream>\
            <nclients>3</nclients></live></application></server></rtmp>";
        let stats = parse_stat(xml).unwrap_or_default();
        assert_eq!(stats.streams.len(), 1, "only published streams");
        let stream = &stats.streams[0];
        assert_eq!((stream.app.as_str(), stream.name.as_str()), ("live", "42"));
        assert_eq!(stream.publisher.as_deref(), Some("7"));
        assert_eq!(stream.publisher_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(stream.bitrate_kbps, Some(412));
        assert_eq!(stream.readers, Some(1));
        assert_eq!(
            stream.video,
            Some(VideoTrack {
                codec: "H264".to_owned(),
                width: Some(320),
                height: Some(240)
            })
        );
        assert_eq!(stream.audio.as_ref().map(|a| a.codec.as_str()), Some("AAC"));
        assert!(matches!(
            parse_stat("<html/>"),
            Err(OriginError::Malformed(_))
        ));
    }
}
