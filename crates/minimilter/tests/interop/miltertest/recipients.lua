-- Envelope modifications at end of message: add a recipient (SMFIR_ADDRCPT),
-- delete one (SMFIR_DELRCPT), and the two miltertest cannot inspect.
--
--   miltertest -s recipients.lua -D sock=unix:/path/to/milter.sock
--
-- Not checkable with miltertest 1.6.0, which records the requests but has no
-- mt.eom_check() operation for them:
--   * add-rcpt-par (SMFIR_ADDRCPT_PAR, '2'): MT_RCPTADD matches only '+';
--   * chgfrom (SMFIR_CHGFROM, 'e'): there is no MT_ constant for it.
-- For those the cases below check only that the message goes through (and,
-- for add-rcpt-par, that it is not sent as a plain add-rcpt). Their wire form
-- is covered by the Postfix end-to-end tests.

dofile("common.lua")

T.main("recipients.lua", function()
    T.case("add-rcpt", function()
        local conn = T.single({ actions = { "add-rcpt <new@example.org>" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "added recipient", MT_RCPTADD, "<new@example.org>")
        T.check_not(conn, "deleted recipient", MT_RCPTDELETE, "<new@example.org>")
        mt.disconnect(conn)
    end)

    T.case("del-rcpt", function()
        local conn = T.single({ rcpts = { "<old@example.org>", "<keep@example.org>" },
            actions = { "del-rcpt <old@example.org>" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "deleted recipient", MT_RCPTDELETE, "<old@example.org>")
        T.check_not(conn, "deleted recipient", MT_RCPTDELETE, "<keep@example.org>")
        mt.disconnect(conn)
    end)

    T.case("several recipients added and deleted in one message", function()
        local conn = T.single({ rcpts = { "<a@example.org>", "<b@example.org>" },
            actions = {
                "add-rcpt <c@example.org>", "del-rcpt <a@example.org>",
                "add-rcpt <d@example.org>", "del-rcpt <b@example.org>",
            } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "added c", MT_RCPTADD, "<c@example.org>")
        T.check(conn, "added d", MT_RCPTADD, "<d@example.org>")
        T.check(conn, "deleted a", MT_RCPTDELETE, "<a@example.org>")
        T.check(conn, "deleted b", MT_RCPTDELETE, "<b@example.org>")
        T.expect_body_bytes(conn, 8)
        mt.disconnect(conn)
    end)

    T.case("add-rcpt-par goes through (not visible to miltertest)", function()
        local conn = T.single({ actions = { "add-rcpt-par <par@example.org> NOTIFY=NEVER" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check_not(conn, "plain add-rcpt", MT_RCPTADD, "<par@example.org>")
        T.expect_body_bytes(conn, 8)
        mt.disconnect(conn)
    end)

    T.case("chgfrom with and without arguments goes through (not visible)", function()
        local conn = T.single({ actions = { "chgfrom <new-sender@example.org>" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.expect_body_bytes(conn, 8)
        mt.disconnect(conn)
        conn = T.single({ actions = { "chgfrom <bounce@example.org> RET=HDRS ENVID=x1" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.expect_body_bytes(conn, 8)
        mt.disconnect(conn)
    end)

    for _, bad in ipairs({ "add-rcpt", "del-rcpt", "add-rcpt-par", "chgfrom" }) do
        T.case("\"" .. bad .. "\" without an address fails safe", function()
            local conn = T.single({ actions = { "add-rcpt <first@example.org>", bad } })
            T.expect_fail_safe(conn)
            T.check_not(conn, "added recipient", MT_RCPTADD, "<first@example.org>")
            mt.disconnect(conn)
        end)
    end
end)
