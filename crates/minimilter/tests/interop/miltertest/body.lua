-- The body: chunks counted (X-Action-Body-Bytes), replaced
-- (SMFIR_REPLBODY), and skipped (SMFIR_SKIP).
--
--   miltertest -s body.lua -D sock=unix:/path/to/milter.sock
--
-- Replacement bodies stay at or below 1000 bytes: the miltertest of Debian 12
-- (2.11.0~beta2) reads end-of-message packets into a buffer of about 1 KiB
-- and aborts ("stack smashing detected") on a longer one. MT_BODYCHANGE also
-- compares single SMFIR_REPLBODY packets, not their concatenation. Splitting
-- of large bodies into 65535-byte packets is therefore not checked here.

dofile("common.lua")

T.main("body.lua", function()
    T.case("body bytes counted over several chunks", function()
        local conn = T.single({ body = { "one\r\n", "two two\r\n", string.rep("x", 1000) .. "\r\n" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.expect_body_bytes(conn, 5 + 9 + 1002)
        T.check_not(conn, "body change", MT_BODYCHANGE)
        mt.disconnect(conn)
    end)

    for _, n in ipairs({ 120, 57, 1000 }) do
        T.case("replace-body " .. n, function()
            local conn = T.single({ actions = { "replace-body " .. n } })
            T.expect_reply(conn, SMFIR_CONTINUE, "eom")
            T.check(conn, n .. " byte body", MT_BODYCHANGE, T.replacement_body(n))
            T.expect_body_bytes(conn, 8) -- the size seen, not the new one
            mt.disconnect(conn)
        end)
    end

    T.case("replace-body 0: one empty replacement", function()
        local conn = T.single({ actions = { "replace-body 0" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "empty body", MT_BODYCHANGE, "")
        mt.disconnect(conn)
    end)

    T.case("a second replace-body replaces the first", function()
        local conn = T.single({ actions = { "replace-body 10", "add-header X-Between yes", "replace-body 20" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "20 byte body", MT_BODYCHANGE, T.replacement_body(20))
        T.check_not(conn, "10 byte body", MT_BODYCHANGE, T.replacement_body(10))
        T.check(conn, "X-Between", MT_HDRADD, "X-Between", "yes")
        mt.disconnect(conn)
    end)

    T.case("replace-body without a size fails safe", function()
        local conn = T.single({ actions = { "replace-body" } })
        T.expect_fail_safe(conn)
        mt.disconnect(conn)
    end)

    T.case("skip-body: the first chunk is answered with skip", function()
        local conn = T.connect()
        T.ok(mt.negotiate(conn, nil, nil, nil), "negotiate")
        local want = SMFIR_SKIP
        if not mt.test_option(conn, SMFIP_SKIP) then
            want = SMFIR_CONTINUE
        end
        T.message(conn, { connect = true, actions = { "skip-body" },
            body = { "first chunk\r\n", "never sent\r\n" }, body_reply = want })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.expect_body_bytes(conn, 13)
        mt.disconnect(conn)
    end)

    T.case("skip-body not offered: every chunk is read", function()
        local conn = T.connect()
        -- Everything miltertest offers by default except SMFIP_SKIP.
        T.ok(mt.negotiate(conn, 6, 0x001FFFFF - SMFIP_SKIP, nil), "negotiate")
        if mt.test_option(conn, SMFIP_SKIP) then
            T.fail("SMFIP_SKIP requested but not offered")
        end
        T.message(conn, { connect = true, actions = { "skip-body" },
            body = { "first\r\n", "second\r\n" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.expect_body_bytes(conn, 15)
        mt.disconnect(conn)
    end)
end)
