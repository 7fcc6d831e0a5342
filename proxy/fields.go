package proxy

// conditionalFields are evaluated here against this gateway's ETags, so
// they must not reach an upstream that would compare them with its own.
// The date fields go too: an upstream that answered them itself would send
// a 304 without this gateway's ETag, or a 304 or 412 that RFC 9110 §13.2.2
// forbids because If-None-Match or If-Match takes precedence.
var conditionalFields = [...]string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"}

// tagListFields carry entity-tag lists, whose syntax is checked before
// anything goes upstream.
var tagListFields = [...]string{"If-Match", "If-None-Match"}

// writeConditionals guard a write; they are enforced here and stripped
// before the write goes upstream, whose ETags (if any) differ from ours.
var writeConditionals = [...]string{"If-Match", "If-None-Match", "If-Unmodified-Since"}

// internalGetDrop is what a write's internal GET leaves out besides the
// conditionalFields: a range would select part of the representation, the
// content fields describe the write's body, which the GET has not, and a
// method override would make the GET a write to an upstream that honours
// it.
var internalGetDrop = [...]string{
	"If-Range", "Range",
	"Content-Type", "Content-Length", "Content-Encoding", "Content-Language", "Content-Range",
	"Content-Md5", "Content-Digest", "Repr-Digest", "Expect", "Transfer-Encoding", "Trailer",
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
}

// checkRelayed are the fields of a check GET's 4xx that tell the client how
// to fix its request (authenticate, or come back later), so they are kept
// on the answer that refuses the write.
var checkRelayed = [...]string{"Www-Authenticate", "Retry-After"}

// notModifiedDrop lists what a 304 must not carry: the representation's
// metadata, except the fields RFC 9110 §15.4.5 requires (Cache-Control,
// Content-Location, Date, ETag, Expires, Vary). Last-Modified goes too: the
// ETag is the stronger validator.
var notModifiedDrop = [...]string{
	"Content-Type", "Content-Length", "Content-Encoding", "Content-Language",
	"Content-Range", "Content-Disposition", "Content-Md5", "Digest",
	"Content-Digest", "Repr-Digest", "Last-Modified", "Transfer-Encoding", "Trailer", "Accept-Ranges",
}
