-- Helpers shared by the miltertest scripts in this directory (loaded with
-- dofile("common.lua"), so run miltertest from this directory):
--
--   cd crates/minimilter/tests/interop/miltertest
--   miltertest -s headers.lua -D sock=unix:/path/to/milter.sock
--
-- The milter under test is the interop "action milter" (minimilter's
-- interop::ActionMilter served by examples/action_milter.rs, or its libmilter
-- twin ../libmilter/action_milter.c): it performs what `X-Action:` headers
-- ask for and adds X-Action-Body-Bytes.
--
-- Notes on miltertest 1.6.0 (Debian package miltertest 2.11.0~beta2):
--   * Lua 5.3; constants such as SMFIR_CONTINUE are floats (compare with ==).
--   * mt.negotiate(conn, version, PROTOCOL, ACTIONS): the manual page says
--     "actions, steps" but the code reads the protocol flags first.
--   * A step the milter negotiated away (SMFIP_NO*) raises a Lua error if
--     sent, so every step goes through T.step(), which asks mt.test_option().
--   * Skipped steps are filled in with default data (one "From" header, the
--     body "Dummy message body.\r\n") when a later step is sent.
--   * End-of-message requests are forgotten only by mt.mailfrom(); when MAIL
--     was negotiated away they pile up across messages on one connection, so
--     most cases use a fresh connection.
--   * mt.getheader(conn, name, n) counts added/inserted headers newest first.
--   * End-of-message packets longer than about 1 KiB make this miltertest
--     abort ("stack smashing detected"): replacement bodies and reply texts
--     in these scripts stay below that.
--   * MT_SMTPREPLY needs at least the code; MT_HDRCHANGE's index argument is
--     broken (see headers.lua); add-rcpt-par and chgfrom cannot be checked
--     (see recipients.lua); progress packets are recorded but not checkable.
--   * A failing mt.* call can make miltertest exit 1 without a message: every
--     case runs inside pcall and failures are printed here.

T = { passed = 0, failed = 0 }

local reply_names = {}
for _, n in ipairs({ "SMFIR_CONTINUE", "SMFIR_ACCEPT", "SMFIR_REJECT",
        "SMFIR_TEMPFAIL", "SMFIR_DISCARD", "SMFIR_REPLYCODE", "SMFIR_SKIP" }) do
    if _G[n] ~= nil then
        reply_names[_G[n]] = n
    end
end

-- "SMFIR_REJECT" for a reply code, or the character and number.
function T.reply_name(code)
    if code == nil then
        return "nil"
    end
    if reply_names[code] ~= nil then
        return reply_names[code]
    end
    local c = math.tointeger(code)
    if c ~= nil and c > 32 and c < 127 then
        return string.format("'%s' (%d)", string.char(c), c)
    end
    return tostring(code)
end

function T.fail(fmt, ...)
    error(string.format(fmt, ...), 2)
end

-- mt.* functions return nil on success, an error text otherwise.
function T.ok(result, what)
    if result ~= nil then
        error(string.format("%s failed: %s", what, tostring(result)), 2)
    end
end

function T.expect_reply(conn, want, what)
    local got = mt.getreply(conn)
    if got ~= want then
        error(string.format("%s: milter answered %s, expected %s", what,
            T.reply_name(got), T.reply_name(want)), 2)
    end
end

function T.connect()
    if sock == nil then
        error("no socket: run with -D sock=unix:/path/to/milter.sock", 2)
    end
    local conn = mt.connect(sock, 100, 0.1)
    if conn == nil then
        error("mt.connect(" .. sock .. ") failed", 2)
    end
    return conn
end

-- True if the milter asked the MTA not to send this step.
function T.declined(conn, no_bit)
    return mt.test_option(conn, no_bit)
end

-- Sends one step unless it was negotiated away; expects `want` (default
-- continue). With SMFIP_NR_* in force miltertest reads no reply and reports
-- continue. Returns true if the step was sent.
function T.step(conn, what, no_bit, want, fn, ...)
    if no_bit ~= nil and mt.test_option(conn, no_bit) then
        return false
    end
    T.ok(fn(conn, ...), what)
    T.expect_reply(conn, want or SMFIR_CONTINUE, what)
    return true
end

T.default_headers = {
    { "From", "Sender <sender@example.com>" },
    { "To", "Recipient <rcpt@example.org>" },
    { "Subject", "miltertest" },
}

-- One message on `conn`, up to and including end of message. `m` fields:
--   connect   send connect and HELO first (a new connection)
--   from      envelope sender (default <sender@example.com>), plus from_args
--   rcpts     envelope recipients (default { "<rcpt@example.org>" })
--   headers   list of { name, value } sent after T.default_headers
--   actions   list of X-Action values (sent as X-Action headers, first)
--   body      list of body chunks (default { "Hello.\r\n" }; {} sends none)
--   body_reply  expected answer to the first body chunk (default continue)
-- Returns after mt.eom(); the caller checks mt.getreply() and the requests.
function T.message(conn, m)
    if m.connect then
        T.step(conn, "connect", SMFIP_NOCONNECT, nil, mt.conninfo,
            "client.example", "192.0.2.10")
        T.step(conn, "helo", SMFIP_NOHELO, nil, mt.helo, "client.example")
    end
    T.step(conn, "mail", SMFIP_NOMAIL, nil, mt.mailfrom,
        m.from or "<sender@example.com>", table.unpack(m.from_args or {}))
    for _, r in ipairs(m.rcpts or { "<rcpt@example.org>" }) do
        T.step(conn, "rcpt " .. r, SMFIP_NORCPT, nil, mt.rcptto, r)
    end
    T.step(conn, "data", SMFIP_NODATA, nil, mt.data)
    for _, a in ipairs(m.actions or {}) do
        T.step(conn, "header X-Action: " .. a, SMFIP_NOHDRS, nil, mt.header,
            "X-Action", a)
    end
    for _, h in ipairs(T.default_headers) do
        T.step(conn, "header " .. h[1], SMFIP_NOHDRS, nil, mt.header, h[1], h[2])
    end
    for _, h in ipairs(m.headers or {}) do
        T.step(conn, "header " .. h[1], SMFIP_NOHDRS, nil, mt.header, h[1], h[2])
    end
    T.step(conn, "eoh", SMFIP_NOEOH, nil, mt.eoh)
    for i, chunk in ipairs(m.body or { "Hello.\r\n" }) do
        local want = nil
        if i == 1 then
            want = m.body_reply
        end
        T.step(conn, "body chunk " .. i, SMFIP_NOBODY, want, mt.bodystring, chunk)
        if want ~= nil and want ~= SMFIR_CONTINUE then
            break
        end
    end
    T.ok(mt.eom(conn), "eom")
end

-- A new connection with one message; returns the connection.
function T.single(m)
    local conn = T.connect()
    m.connect = true
    T.message(conn, m)
    return conn
end

-- Asserts an mt.eom_check() result.
function T.check(conn, what, op, ...)
    if not mt.eom_check(conn, op, ...) then
        error("missing at end of message: " .. what, 2)
    end
end

function T.check_not(conn, what, op, ...)
    if mt.eom_check(conn, op, ...) then
        error("unexpected at end of message: " .. what, 2)
    end
end

-- Values of the headers called `name` added or inserted at end of message,
-- newest first.
function T.added(conn, name)
    local values = {}
    while true do
        local v = mt.getheader(conn, name, #values)
        if v == nil then
            return values
        end
        values[#values + 1] = v
    end
end

local function show(list)
    local q = {}
    for i, v in ipairs(list) do
        q[i] = string.format("%q", v)
    end
    return "{" .. table.concat(q, ", ") .. "}"
end

-- Asserts the exact list of values T.added() returns.
function T.expect_added(conn, name, want)
    local got = T.added(conn, name)
    if show(got) ~= show(want) then
        error(string.format("added %s headers (newest first): got %s, expected %s",
            name, show(got), show(want)), 2)
    end
end

-- Asserts X-Action-Body-Bytes of the newest message.
function T.expect_body_bytes(conn, n)
    local got = mt.getheader(conn, "X-Action-Body-Bytes", 0)
    if got ~= tostring(n) then
        error(string.format("X-Action-Body-Bytes: got %s, expected %d",
            tostring(got), n), 2)
    end
end

-- The text the action milter's `replace-body N` produces.
function T.replacement_body(n)
    local line = "The quick brown fox jumps over the lazy dog. 0123456789\r\n"
    local s = string.rep(line, n // #line + 1)
    return s:sub(1, n)
end

T.fail_safe = { "451", "4.3.0", "Temporary failure in mail filter, try again later" }

-- The milter failed (bad action, modification not negotiated): fail-safe
-- tempfail with minimilter's default text, and nothing modified.
function T.expect_fail_safe(conn)
    T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
    T.check(conn, "fail-safe reply", MT_SMTPREPLY, table.unpack(T.fail_safe))
    T.check_not(conn, "any added header", MT_HDRADD)
    T.check_not(conn, "any body change", MT_BODYCHANGE)
end

-- Runs one named case; a failure is printed and counted, the script goes on.
function T.case(name, fn)
    local ok, err = pcall(fn)
    if ok then
        T.passed = T.passed + 1
        mt.echo("ok    " .. name)
    else
        T.failed = T.failed + 1
        mt.echo("FAIL  " .. name .. ": " .. tostring(err))
        io.stderr:write("FAIL  " .. name .. ": " .. tostring(err) .. "\n")
    end
end

-- Ends the script: exit status 1 if any case failed.
function T.finish(script)
    mt.echo(string.format("%s: %d passed, %d failed", script, T.passed, T.failed))
    io.stdout:flush()
    if T.failed > 0 then
        os.exit(1)
    end
end

-- Runs a whole script body: any error outside a case is printed, exit 1.
function T.main(script, body)
    local ok, err = pcall(body)
    if not ok then
        io.stderr:write(script .. ": " .. tostring(err) .. "\n")
        mt.echo(script .. ": ERROR " .. tostring(err))
        io.stdout:flush()
        os.exit(1)
    end
    T.finish(script)
end
