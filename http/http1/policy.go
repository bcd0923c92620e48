package http1

// Framing and smuggling policy. The parser is where Portico decides what a message's
// bytes are; a hop that decides differently (a backend, a second proxy) is how request
// smuggling works. The rule throughout: where peers are known to disagree, refuse the
// message rather than pick a reading. Each rule below names its reason and its answer
// (requests; any error parsing a response is 502, the Detail is the same). Envoy's
// choice is the reference; where Envoy is silent or lenient, nginx's or the RFC's
// stricter option is taken and the row says so. policy_test.go has one or more cases
// per row; smuggling_test.go replays public desync suites against it.
//
// Rule                                         Answer  Detail                     Reason / status vs Envoy
// -------------------------------------------- ------- -------------------------- ------------------------------------------------
// Content-Length and Transfer-Encoding both      400   content_length_and_chunked The classic CL.TE/TE.CL desync (RFC 9112 §6.1
//                                                      _not_allowed               "ought to be handled as an error"). Envoy, with
//                                                                                 allow_chunked_length off (its default).
// Two Content-Length fields (even equal)         400   invalid_content_length     Merging rules differ across hops. Envoy.
// Content-Length not 1*DIGIT ("5, 5", "+5",      400   invalid_content_length     Lists, signs, spaces, hex are read differently
//   "-1", "", "1 0", "0x5") or > int64                                            by different parsers. Envoy.
// Transfer-Encoding other than exactly           501   invalid_transfer_encoding  RFC 9112 §6.1: 501 for codings we do not
//   "chunked" (any case): "gzip, chunked",                                        understand; chunked twice is a known vector.
//   "chunked, chunked", two TE fields,                                            Envoy (it also refuses TE on CONNECT).
//   "identity", "chunked;q=1", TE on CONNECT
// Transfer-Encoding on an HTTP/1.0 request       400   transfer_encoding_http10   A 1.0 hop ignores TE and reads to the close or
//                                                                                 by CL. Stricter than Envoy (RFC 9112 §6.1 lets
//                                                                                 a server treat such a body as faulty).
// CONNECT with a Content-Length body             400   connect_with_body          After CONNECT's head the bytes are the tunnel.
// Request without CL/TE                          body  -                          No length means no body (RFC 9112 §6.3 rule 6);
//                                                none                              a request is never read to the close.
// obs-fold (field line starting SP/HT)           400   obs_fold                   RFC 9112 §5.2 permits 400. Envoy unfolds; we
//                                                                                 refuse (unfolding is where hops disagree).
// Whitespace between field name and colon        400   invalid_characters         RFC 9112 §5.1 MUST. "Transfer-Encoding :".
// Empty field name, name not a token (CTL,       400   invalid_characters         Names read differently by lenient parsers
//   non-ASCII, separators), line without colon         (codec_error: no colon)    ("\x01Content-Length", "Transfer-Encodıng").
// NUL, CR, LF, other CTL (HT allowed), DEL       400   invalid_characters         RFC 9110 §5.5. A lone CR or LF in a value ends
//   in a field value                                                              the line for some parsers.
// Bare LF as a line end (head, trailers)         400   codec_error                Envoy's Balsa and llhttp (strict) refuse it;
//                                                                                 nginx accepts it. We refuse: desync vector.
// CRLF before a request line                     skip  -                          RFC 9112 §2.2 SHOULD ignore; Envoy does. A lone
//                                                                                 CR there is 400.
// More than MaxHeadersCount fields               431   too_many_headers           Envoy max_headers_count (100). Trailers count
//                                                                                 separately against the same limit.
// Request line + head over MaxHeadersBytes       431   headers_too_large          Envoy max_request_headers_kb (60 KiB). Checked
//                                                                                 as bytes arrive: the line buffer never exceeds it.
// Underscore in a request field name             400 / unexpected_underscore      Envoy headers_with_underscores_action: Allow,
//                                                drop                             RejectRequest, DropHeader (counted in
//                                                                                 Message.DroppedUnderscoreHeaders). Trailers too.
// Two Host fields (even equal)                   400   multiple_host_headers      Hops pick different ones (RFC 9112 §3.2 MUST).
// Host with SP/HT, '/', '?', '#', '@', '\'       400   invalid_host               Host is uri-host[:port]; these split hosts
//                                                                                 differently. Stricter than Envoy's codec.
// HTTP/1.1 request without Host                  400   missing_host_header        RFC 9112 §3.2 MUST. absolute-form and CONNECT
//                                                                                 carry the authority in the target instead.
// HTTP/1.0 request, AcceptHTTP10 off             426   http_10_not_supported      Envoy accept_http_10 (off by default).
// HTTP version not 1.0/1.1 ("HTTP/1.2",          505   invalid_http_version       Well formed, unsupported. "PRI * HTTP/2.0" is
//   "HTTP/2.0")                                        h2_preface                 an h2 client with prior knowledge: own Detail.
// Malformed version ("http/1.1", "HTTP/1.10",    400   invalid_http_version       HTTP/0.9 ("GET /") is not spoken (Envoy).
//   missing), extra/tab separators                     / codec_error
// Method not a token                             400   invalid_method
// request-target byte outside 0x21-0x7e          400   invalid_url                RFC 3986 targets are ASCII; raw bytes >0x7f are
//                                                                                 percent-encoded by clients.
// Target form: origin "/..."; absolute           400   invalid_url                absolute-form's authority replaces Host (RFC
//   "http(s)://host/p" (no userinfo); "*"                                         9112 §3.2.2, as Envoy); userinfo refused (RFC
//   only for OPTIONS; host:port only for                                          9110 §4.2.4 deprecates it; "a@b" reads as two
//   CONNECT (which must use it)                                                   hosts).
// Chunk size: 1-16 hex digits fitting int64;     400   invalid_chunk              Overflowing sizes wrap in some parsers; "5 \r\n"
//   BWS only before ';'; line ends CRLF                                           and lone LF split lines differently.
// Chunk extensions: any field-value bytes, at    400   invalid_chunk              Ignored, as Envoy does. CTLs (lone LF/CR) are
//   most 4 KiB per chunk line                                                     the "chunk extension" desync; the bound stops
//                                                                                 an endless chunk line.
// Chunk data not followed by CRLF                400   invalid_chunk              A size/data mismatch is a smuggled message.
// Trailers: parsed like header fields,           -     (as headers)               Envoy's default (no trailer forwarding for
//   validated, counted, discarded                                                 HTTP/1). Message ends at their empty line.
// Stream ends mid-message                        400   codec_error                Finish; a BodyUntilClose response completes.
// Responses: 1xx (not 101), 204, 304, HEAD's     body  -                          RFC 9112 §6.3 rules 1-2. 1xx are delivered as
//   response, CONNECT's 2xx                      none                             messages; the final response follows.
// Response 101, CONNECT 2xx                      stop  -                          Parse consumes nothing more (Upgraded()).
// Response without CL/TE (other statuses)        until -                          RFC 9112 §6.3 rule 8; KeepAlive false.
//                                                close
// Response TE not exactly chunked, CL+TE, TE     502   as requests                Envoy treats these upstream framings as errors.
//   on HTTP/1.0, two CL, bad CL, obs-fold, CTLs
// Status code not 3 digits in 100-599; version   502   invalid_status /
//   not HTTP/1.0 or 1.1                                invalid_http_version
//
// KeepAlive (RFC 9112 §9.3): HTTP/1.1 unless Connection has "close"; HTTP/1.0 only with
// "keep-alive" and no "close". Connection is a comma list of case-insensitive tokens.
// Upgrade = Connection has "upgrade" and an Upgrade field is present. Expect100 = an
// HTTP/1.1 request's Expect is "100-continue" (any case).
