-- Every protocol step, in order, on one connection: negotiate, macros,
-- connect, HELO, MAIL (with ESMTP arguments), RCPT (twice), DATA, headers,
-- end of headers, body chunks, end of message, an unknown command, then an
-- aborted message and two more messages on the same connection (per-message
-- state must be reset by abort and by end of message). Also end of message
-- that takes longer than miltertest's read timeout, kept alive by progress.
--
--   miltertest -s steps.lua -D sock=unix:/path/to/milter.sock
--
-- Steps the milter negotiated away are not sent (miltertest refuses to);
-- with SMFIP_NR_* in force miltertest reads no reply and reports continue.
-- The "slow" case needs the milter's progress interval below one second
-- (the Rust test starts both milters with 200 ms).

dofile("common.lua")

T.main("steps.lua", function()
    T.case("one connection: all steps, abort, three more messages", function()
        local conn = T.connect()
        T.ok(mt.negotiate(conn, nil, nil, nil), "negotiate")

        -- Message 1: every step explicitly, with macros (which get no reply).
        T.ok(mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.org",
            "{daemon_name}", "miltertest"), "connect macros")
        T.step(conn, "connect", SMFIP_NOCONNECT, nil, mt.conninfo,
            "client.example", "192.0.2.10")
        T.ok(mt.macro(conn, SMFIC_HELO, "{tls_version}", "TLSv1.3"), "helo macros")
        T.step(conn, "helo", SMFIP_NOHELO, nil, mt.helo, "client.example")
        T.ok(mt.macro(conn, SMFIC_MAIL, "i", "4XyZ1", "{auth_authen}", "alice"),
            "mail macros")
        T.step(conn, "mail", SMFIP_NOMAIL, nil, mt.mailfrom,
            "<sender@example.com>", "SIZE=1234", "BODY=8BITMIME")
        T.ok(mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", "a@example.org"), "rcpt macros")
        T.step(conn, "rcpt 1", SMFIP_NORCPT, nil, mt.rcptto, "<a@example.org>")
        T.step(conn, "rcpt 2", SMFIP_NORCPT, nil, mt.rcptto, "<b@example.org>",
            "NOTIFY=NEVER")
        T.step(conn, "data", SMFIP_NODATA, nil, mt.data)
        T.step(conn, "header From", SMFIP_NOHDRS, nil, mt.header, "From",
            "<sender@example.com>")
        T.step(conn, "header Subject", SMFIP_NOHDRS, nil, mt.header, "Subject",
            "every step")
        T.step(conn, "header X-Action", SMFIP_NOHDRS, nil, mt.header, "X-Action",
            "add-header X-Steps done")
        T.step(conn, "eoh", SMFIP_NOEOH, nil, mt.eoh)
        T.step(conn, "body 1", SMFIP_NOBODY, nil, mt.bodystring, "Hello\r\n")
        T.step(conn, "body 2", SMFIP_NOBODY, nil, mt.bodystring, "World!\r\n")
        T.ok(mt.eom(conn), "eom")
        T.expect_reply(conn, SMFIR_CONTINUE, "eom 1")
        T.expect_added(conn, "X-Steps", { "done" })
        T.expect_body_bytes(conn, 15)

        -- Between messages: an unknown SMTP command.
        T.step(conn, "unknown", SMFIP_NOUNKNOWN, nil, mt.unknown, "XFROB all")

        -- Message 2: aborted before end of message.
        T.step(conn, "mail 2", SMFIP_NOMAIL, nil, mt.mailfrom, "<s2@example.com>")
        T.step(conn, "rcpt 2", SMFIP_NORCPT, nil, mt.rcptto, "<a@example.org>")
        T.step(conn, "header 2", SMFIP_NOHDRS, nil, mt.header, "X-Action",
            "add-header X-Seq two")
        T.step(conn, "eoh 2", SMFIP_NOEOH, nil, mt.eoh)
        T.step(conn, "body 2", SMFIP_NOBODY, nil, mt.bodystring, "aborted\r\n")
        T.ok(mt.abort(conn), "abort")

        -- Message 3: nothing of message 2 may remain (action, body size).
        T.step(conn, "mail 3", SMFIP_NOMAIL, nil, mt.mailfrom, "<s3@example.com>")
        T.step(conn, "rcpt 3", SMFIP_NORCPT, nil, mt.rcptto, "<a@example.org>")
        T.step(conn, "header 3", SMFIP_NOHDRS, nil, mt.header, "X-Action",
            "add-header X-Seq three")
        T.step(conn, "eoh 3", SMFIP_NOEOH, nil, mt.eoh)
        T.step(conn, "body 3", SMFIP_NOBODY, nil, mt.bodystring, "third\r\n")
        T.ok(mt.eom(conn), "eom 3")
        T.expect_reply(conn, SMFIR_CONTINUE, "eom 3")
        T.expect_added(conn, "X-Seq", { "three" })
        T.expect_body_bytes(conn, 7)

        -- Message 4, after an end of message: nothing of message 3 remains.
        T.step(conn, "mail 4", SMFIP_NOMAIL, nil, mt.mailfrom, "<s4@example.com>")
        T.step(conn, "header 4", SMFIP_NOHDRS, nil, mt.header, "X-Action",
            "add-header X-Seq four")
        T.step(conn, "eoh 4", SMFIP_NOEOH, nil, mt.eoh)
        T.step(conn, "body 4", SMFIP_NOBODY, nil, mt.bodystring, "4\r\n")
        T.ok(mt.eom(conn), "eom 4")
        T.expect_reply(conn, SMFIR_CONTINUE, "eom 4")
        if mt.test_option(conn, SMFIP_NOMAIL) then
            -- No mt.mailfrom(): miltertest still holds message 3's requests.
            T.expect_added(conn, "X-Seq", { "four", "three" })
        else
            T.expect_added(conn, "X-Seq", { "four" })
        end
        T.expect_body_bytes(conn, 3)
        T.ok(mt.disconnect(conn), "disconnect")
    end)

    T.case("connect from IPv6 and from an unknown address family", function()
        for _, ip in ipairs({ "2001:db8::25", "unspec" }) do
            local conn = T.connect()
            T.ok(mt.negotiate(conn, nil, nil, nil), "negotiate")
            T.step(conn, "connect " .. ip, SMFIP_NOCONNECT, nil, mt.conninfo,
                "client6.example", ip)
            T.message(conn, { actions = { "add-header X-Family " .. ip } })
            T.expect_reply(conn, SMFIR_CONTINUE, "eom")
            T.expect_added(conn, "X-Family", { ip })
            T.ok(mt.disconnect(conn), "disconnect")
        end
    end)

    T.case("default data: miltertest fills in every skipped step", function()
        local conn = T.connect()
        T.ok(mt.eom(conn), "eom") -- negotiates and sends defaults first
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.expect_body_bytes(conn, #"Dummy message body.\r\n")
        T.ok(mt.disconnect(conn), "disconnect")
    end)

    T.case("slow end of message kept alive by progress packets", function()
        -- miltertest gives up when no packet arrives for set_timeout seconds.
        mt.set_timeout(1)
        local ok, err = pcall(function()
            local conn = T.single({ actions = { "slow 2500", "add-header X-Slow done" } })
            T.expect_reply(conn, SMFIR_CONTINUE, "eom")
            T.expect_added(conn, "X-Slow", { "done" })
            T.ok(mt.disconnect(conn), "disconnect")
        end)
        mt.set_timeout(10)
        if not ok then
            error(err, 0)
        end
    end)
end)
