-- Option negotiation of the action milter.
--
--   miltertest -s negotiate.lua -D sock=unix:/path/to/milter.sock \
--       [-D expect_declined=connect,helo,...] [-D expect_noreply=header,...]
--
-- Always checked: every modification action is requested when offered (and
-- SETSYMLIST is not, the milter asks for no macros), SKIP is requested, the
-- steps the milter works with (header, body) are not declined, and nothing
-- beyond a restricted offer is requested. With expect_declined /
-- expect_noreply (comma-separated step names: connect helo mail rcpt data
-- header eoh body unknown; empty for none) the exact SMFIP_NO* / SMFIP_NR_*
-- bits are checked as well: they differ between the Rust milter (declines
-- the steps it does not implement) and the libmilter one (declines nothing;
-- with -n it asks for no-reply steps).

dofile("common.lua")

local STEPS = {
    { "connect", SMFIP_NOCONNECT, SMFIP_NR_CONN },
    { "helo", SMFIP_NOHELO, SMFIP_NR_HELO },
    { "mail", SMFIP_NOMAIL, SMFIP_NR_MAIL },
    { "rcpt", SMFIP_NORCPT, SMFIP_NR_RCPT },
    { "data", SMFIP_NODATA, SMFIP_NR_DATA },
    { "header", SMFIP_NOHDRS, SMFIP_NR_HDR },
    { "eoh", SMFIP_NOEOH, SMFIP_NR_EOH },
    { "body", SMFIP_NOBODY, SMFIP_NR_BODY },
    { "unknown", SMFIP_NOUNKNOWN, SMFIP_NR_UNKN },
}

local ACTIONS = {
    { "ADDHDRS", SMFIF_ADDHDRS }, { "CHGBODY", SMFIF_CHGBODY },
    { "ADDRCPT", SMFIF_ADDRCPT }, { "DELRCPT", SMFIF_DELRCPT },
    { "CHGHDRS", SMFIF_CHGHDRS }, { "QUARANTINE", SMFIF_QUARANTINE },
    { "CHGFROM", SMFIF_CHGFROM }, { "ADDRCPT_PAR", SMFIF_ADDRCPT_PAR },
}

local function set_of(list)
    local s = {}
    if list ~= nil then
        for name in string.gmatch(list, "[^,%s]+") do
            s[name] = true
        end
    end
    return s
end

-- Checks the SMFIP_NO* / SMFIP_NR_* bits against the expectations, if given.
local function check_steps(conn, declined_list, noreply_list)
    local declined, noreply = set_of(declined_list), set_of(noreply_list)
    for _, s in ipairs(STEPS) do
        local name, no_bit, nr_bit = s[1], s[2], s[3]
        if declined_list ~= nil and mt.test_option(conn, no_bit) ~= (declined[name] == true) then
            T.fail("step %s: declined = %s, expected %s", name,
                tostring(mt.test_option(conn, no_bit)), tostring(declined[name] == true))
        end
        if noreply_list ~= nil and mt.test_option(conn, nr_bit) ~= (noreply[name] == true) then
            T.fail("step %s: no-reply = %s, expected %s", name,
                tostring(mt.test_option(conn, nr_bit)), tostring(noreply[name] == true))
        end
    end
end

T.main("negotiate.lua", function()
    T.case("default offer (everything): all actions, skip, header and body", function()
        local conn = T.connect()
        T.ok(mt.negotiate(conn, nil, nil, nil), "negotiate")
        for _, a in ipairs(ACTIONS) do
            if not mt.test_action(conn, a[2]) then
                T.fail("action SMFIF_%s not requested", a[1])
            end
        end
        if mt.test_action(conn, SMFIF_SETSYMLIST) then
            T.fail("SMFIF_SETSYMLIST requested but no macro list was sent")
        end
        if not mt.test_option(conn, SMFIP_SKIP) then
            T.fail("SMFIP_SKIP not requested")
        end
        for _, bit in ipairs({ SMFIP_NOHDRS, SMFIP_NOBODY, SMFIP_NR_BODY }) do
            if mt.test_option(conn, bit) then
                T.fail("protocol bit 0x%x requested: the milter needs headers and body", bit)
            end
        end
        for _, bit in ipairs({ SMFIP_HDR_LEADSPC, SMFIP_RCPT_REJ, SMFIP_MDS_256K, SMFIP_MDS_1M }) do
            if mt.test_option(conn, bit) then
                T.fail("protocol bit 0x%x requested but not wanted", bit)
            end
        end
        check_steps(conn, expect_declined, expect_noreply)
        mt.disconnect(conn)
    end)

    -- An MTA that offers little: only two actions, no SKIP, no NR_* bits, and
    -- only NOUNKNOWN/NODATA among the NO* bits.
    local RESTRICTED_PROTOCOL = SMFIP_NOUNKNOWN + SMFIP_NODATA
    local RESTRICTED_ACTIONS = SMFIF_ADDHDRS + SMFIF_CHGHDRS

    local function restricted()
        local conn = T.connect()
        T.ok(mt.negotiate(conn, 6, RESTRICTED_PROTOCOL, RESTRICTED_ACTIONS), "negotiate")
        return conn
    end

    T.case("restricted offer: nothing beyond it is requested", function()
        local conn = restricted()
        for _, a in ipairs(ACTIONS) do
            local offered = a[2] == SMFIF_ADDHDRS or a[2] == SMFIF_CHGHDRS
            if mt.test_action(conn, a[2]) ~= offered then
                T.fail("action SMFIF_%s: requested = %s, offered = %s", a[1],
                    tostring(mt.test_action(conn, a[2])), tostring(offered))
            end
        end
        if mt.test_option(conn, SMFIP_SKIP) then
            T.fail("SMFIP_SKIP requested but not offered")
        end
        for _, s in ipairs(STEPS) do
            if mt.test_option(conn, s[3]) then
                T.fail("SMFIP_NR for %s requested but not offered", s[1])
            end
            if s[2] ~= SMFIP_NOUNKNOWN and s[2] ~= SMFIP_NODATA and mt.test_option(conn, s[2]) then
                T.fail("SMFIP_NO for %s requested but not offered", s[1])
            end
        end
        mt.disconnect(conn)
    end)

    T.case("restricted offer: every step the MTA sends is answered", function()
        -- Steps the milter cannot decline are sent; it must answer each
        -- (continue), even the ones it has no callback for.
        local conn = restricted()
        T.message(conn, {
            connect = true,
            actions = { "add-header X-Restricted yes", "change-header Subject 1 changed" },
        })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-Restricted", MT_HDRADD, "X-Restricted", "yes")
        T.check(conn, "Subject change", MT_HDRCHANGE, "Subject", "changed")
        T.expect_body_bytes(conn, 8)
        if not mt.test_option(conn, SMFIP_NOUNKNOWN) then
            T.step(conn, "unknown", nil, nil, mt.unknown, "XUNKNOWN command")
        end
        mt.disconnect(conn)
    end)

    T.case("restricted offer: a modification not granted fails safe", function()
        local conn = restricted()
        T.message(conn, { connect = true, actions = { "add-rcpt <extra@example.org>" } })
        T.expect_fail_safe(conn)
        T.check_not(conn, "added recipient", MT_RCPTADD, "<extra@example.org>")
        mt.disconnect(conn)
    end)

    T.case("offer without ADDHDRS: X-Action-Body-Bytes impossible, fails safe", function()
        local conn = T.connect()
        T.ok(mt.negotiate(conn, 6, RESTRICTED_PROTOCOL, SMFIF_CHGHDRS), "negotiate")
        if mt.test_action(conn, SMFIF_ADDHDRS) then
            T.fail("SMFIF_ADDHDRS requested but not offered")
        end
        T.message(conn, { connect = true })
        T.expect_fail_safe(conn)
        mt.disconnect(conn)
    end)
end)
