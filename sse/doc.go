// Package sse fans notifications out to server-sent-event streams: the hub
// that fs_notify's file watcher and any other source publish to. It knows
// nothing of where notifications come from, only how to deliver them.
//
// # Words
//
// A notification is one change, of the source's own type N. The
// notifications published during one batch window make a frame, numbered
// by one id. Each stream receives the part of a frame that concerns it as
// one SSE event:
//
//	id: 1796174263187300
//	data: [<notification as JSON>,...]
//
// or, when notifications were lost, `event: overflow` with
// `data: {"reason":"..."}` and an id of its own.
//
// # The API, in the order a source uses it
//
//   - New(cfg, src, transport) starts a Hub[N]. The Source src gives the
//     scope of a notification (the keys of where it happened, outermost
//     first) and is told when a stream ends. A nil transport keeps the hub
//     on its own; a Transport shared by several replicas fans out across
//     them (see Transport).
//   - Publish(n) adds n to the open batch window. The window is sent as
//     frames of at most MaxFrame notifications once cfg.Batch has passed
//     since its first notification.
//   - Overflow(reason, scope) tells the streams scope concerns (every
//     stream for nil) that notifications were lost, in its place among
//     what was published.
//   - End(key, final) publishes final to the streams listening under key
//     and ends those streams once it is written (a watched directory that
//     was removed).
//   - Subscribe(Subscription{Topic, Since, LastEventID, Resume, Name})
//     opens a Stream. Its Topic says which notifications it sees (it
//     listens under one key of their scopes and matches them) and writes
//     each as JSON; streams with equal topics share a view, in which each
//     frame is encoded once. With Resume, the events the client missed
//     since LastEventID are queued first, from the history, or an
//     overflow with reason "history" when the history cannot tell (the id
//     is unknown or too old, or older than Since: the source did not
//     cover the topic all that time; LastID gives the value to pass).
//     Subscribe refuses with ErrTooManySubscribers once MaxSubscribers
//     streams are open, and with ErrClosed.
//   - Stream.Serve(w, r) writes the stream as the response: the header
//     (text/event-stream, no-cache), a first comment once the subscription
//     is in place, the events, a keep-alive comment every cfg.Keepalive.
//   - Close sends the open batch window, then ends every stream with a
//     ": closing" comment and the end of the response, and waits for
//     every goroutine of the hub.
//
// # Streams
//
// Every stream has a queue of at most cfg.Queue events, filled without
// ever blocking: a subscriber that falls a whole queue behind is sent an
// overflow (reason "subscriber_queue") and disconnected, and a write that
// makes no progress for 10 seconds disconnects it too, so that a slow
// client never delays the others. On Linux, a stream over HTTP/1.x
// without TLS is taken over from net/http once its first comment is sent,
// as a WebSocket upgrade would be, and written by a few writer goroutines
// of the hub (a couple of KiB per idle stream, no goroutine of its own);
// its response says Connection: close. HTTP/2, HTTP/3 and TLS streams are
// written by the goroutine serving their request.
//
// # Clustering
//
// Frames are numbered and delivered by a Transport: the default one
// numbers them in this process; a clustered one sends them through a bus
// that numbers them consecutively across replicas and delivers every
// replica's frames to every hub, which fans them out and keeps them in its
// history like its own. Publications from elsewhere thus need no other
// way in, and a client may resume with its Last-Event-ID on any replica
// that was delivered the frames since.
package sse
