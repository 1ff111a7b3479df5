-- End-of-message verdicts: continue, accept, discard, reject and tempfail
-- with and without reply texts (SMFIR_REPLYCODE), multi-line replies,
-- quarantine (SMFIR_QUARANTINE), and the fail-safe answer for a bad reply.
--
--   miltertest -s verdicts.lua -D sock=unix:/path/to/milter.sock
--
-- MT_SMTPREPLY compares "CODE[ X.Y.Z[ TEXT]]" with the whole reply text, so a
-- multi-line reply is checked by passing its complete wire form (lines joined
-- with CRLF, '-' after the code on all lines but the last) as the code.
-- Modifications are sent only with a delivering verdict (continue, accept);
-- with reject, tempfail or discard none may reach the MTA.

dofile("common.lua")

local function no_modifications(conn)
    T.check_not(conn, "any added header", MT_HDRADD)
    T.check_not(conn, "any added recipient", MT_RCPTADD, "<x@example.org>")
    T.check_not(conn, "any quarantine", MT_QUARANTINE)
end

T.main("verdicts.lua", function()
    T.case("no verdict action: continue", function()
        local conn = T.single({ actions = {} })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.expect_body_bytes(conn, 8)
        mt.disconnect(conn)
    end)

    T.case("accept: modifications still sent", function()
        local conn = T.single({ actions = { "accept", "add-header X-Accepted yes" } })
        T.expect_reply(conn, SMFIR_ACCEPT, "eom")
        T.check(conn, "X-Accepted", MT_HDRADD, "X-Accepted", "yes")
        T.expect_body_bytes(conn, 8)
        mt.disconnect(conn)
    end)

    T.case("discard: no modifications", function()
        local conn = T.single({ actions = { "add-header X-Gone yes", "add-rcpt <x@example.org>", "discard" } })
        T.expect_reply(conn, SMFIR_DISCARD, "eom")
        no_modifications(conn)
        mt.disconnect(conn)
    end)

    T.case("reject with a one-line text", function()
        local conn = T.single({ actions = { "add-header X-Gone yes", "reject 550 5.7.1 Go  away, spammer" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check(conn, "550 5.7.1 text", MT_SMTPREPLY, "550", "5.7.1", "Go away, spammer")
        no_modifications(conn)
        mt.disconnect(conn)
    end)

    T.case("reject with a multi-line text", function()
        local conn = T.single({ actions = { "reject 554 5.7.0 first line|second line|third" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check(conn, "three-line reply", MT_SMTPREPLY,
            "554-5.7.0 first line\r\n554-5.7.0 second line\r\n554 5.7.0 third")
        mt.disconnect(conn)
    end)

    T.case("tempfail with a one-line and a two-line text", function()
        local conn = T.single({ actions = { "tempfail 451 4.7.1 Try again later" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check(conn, "451 4.7.1 text", MT_SMTPREPLY, "451", "4.7.1", "Try again later")
        no_modifications(conn)
        mt.disconnect(conn)
        conn = T.single({ actions = { "tempfail 421 4.3.2 Going down|Come back soon" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check(conn, "two-line reply", MT_SMTPREPLY,
            "421-4.3.2 Going down\r\n421 4.3.2 Come back soon")
        mt.disconnect(conn)
    end)

    T.case("'%' in a reply text is doubled", function()
        local conn = T.single({ actions = { "reject 550 5.7.1 100% spam" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check(conn, "doubled percent", MT_SMTPREPLY, "550", "5.7.1", "100%% spam")
        mt.disconnect(conn)
    end)

    T.case("reject with only a code, or code and enhanced code", function()
        local conn = T.single({ actions = { "reject 554" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check(conn, "bare code", MT_SMTPREPLY, "554 ")
        mt.disconnect(conn)
        conn = T.single({ actions = { "reject 550 5.7.1" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check(conn, "code and enhanced code", MT_SMTPREPLY, "550", "5.7.1")
        mt.disconnect(conn)
    end)

    T.case("a reply of the other class is not used: plain reject/tempfail", function()
        -- libmilter sends the text only if its class matches the verdict.
        local conn = T.single({ actions = { "reject 451 4.7.1 not a rejection" } })
        T.expect_reply(conn, SMFIR_REJECT, "eom")
        T.check_not(conn, "reply text", MT_SMTPREPLY, "451", "4.7.1", "not a rejection")
        no_modifications(conn)
        mt.disconnect(conn)
        conn = T.single({ actions = { "tempfail 550 5.7.1 not a tempfail" } })
        T.expect_reply(conn, SMFIR_TEMPFAIL, "eom")
        T.check_not(conn, "reply text", MT_SMTPREPLY, "550", "5.7.1", "not a tempfail")
        mt.disconnect(conn)
    end)

    T.case("the last verdict action wins", function()
        local conn = T.single({ actions = { "reject 550 5.7.1 no", "discard", "accept" } })
        T.expect_reply(conn, SMFIR_ACCEPT, "eom")
        T.expect_body_bytes(conn, 8)
        mt.disconnect(conn)
        conn = T.single({ actions = { "accept", "reject 550 5.7.1 after all" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check(conn, "reply", MT_SMTPREPLY, "550", "5.7.1", "after all")
        mt.disconnect(conn)
    end)

    for _, bad in ipairs({
        "reject",                      -- no code
        "reject 250 2.0.0 ok",         -- not a 4xx/5xx code
        "reject 570 5.7.1 x",          -- second digit above 5
        "reject 550 4.7.1 x",          -- enhanced code of another class
        "reject 550 5.7 x",            -- malformed enhanced code
        "reject 550 Go away",          -- second word must be the enhanced code
        "tempfail 4xx 4.0.0 x",        -- code is not a number
    }) do
        T.case("bad reply \"" .. bad .. "\" fails safe", function()
            local conn = T.single({ actions = { "add-header X-Gone yes", bad } })
            T.expect_fail_safe(conn)
            mt.disconnect(conn)
        end)
    end

    T.case("quarantine with a reason", function()
        local conn = T.single({ actions = { "quarantine held  for review" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "quarantine reason", MT_QUARANTINE, "held for review")
        T.expect_body_bytes(conn, 8)
        mt.disconnect(conn)
    end)

    T.case("quarantine with accept, and no quarantine with reject", function()
        local conn = T.single({ actions = { "quarantine suspicious", "accept" } })
        T.expect_reply(conn, SMFIR_ACCEPT, "eom")
        T.check(conn, "quarantine", MT_QUARANTINE, "suspicious")
        mt.disconnect(conn)
        conn = T.single({ actions = { "quarantine suspicious", "reject 550 5.7.1 no" } })
        T.expect_reply(conn, SMFIR_REPLYCODE, "eom")
        T.check_not(conn, "quarantine", MT_QUARANTINE)
        mt.disconnect(conn)
    end)
end)
