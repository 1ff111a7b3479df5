-- Header modifications at end of message: add (SMFIR_ADDHEADER), insert
-- (SMFIR_INSHEADER), change (SMFIR_CHGHEADER), delete (SMFIR_CHGHEADER with
-- an empty value), and the failures that must leave the message untouched.
--
--   miltertest -s headers.lua -D sock=unix:/path/to/milter.sock
--
-- miltertest 1.6.0 quirk: MT_HDRCHANGE with an index argument compares the
-- index with the *value* argument converted to a number (it reads the wrong
-- Lua argument), so changes are checked by name and value only.

dofile("common.lua")

T.main("headers.lua", function()
    T.case("add-header appends a header (words joined by one space)", function()
        local conn = T.single({ actions = { "add-header X-Added  hello   world" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-Added", MT_HDRADD, "X-Added", "hello world")
        T.expect_added(conn, "X-Added", { "hello world" })
        T.check_not(conn, "any insertion", MT_HDRINSERT)
        mt.disconnect(conn)
    end)

    T.case("add-header without a value adds an empty one", function()
        local conn = T.single({ actions = { "add-header X-Empty" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-Empty", MT_HDRADD, "X-Empty", "")
        mt.disconnect(conn)
    end)

    T.case("insert-header at index 0 and 2", function()
        local conn = T.single({ actions = {
            "insert-header 0 X-Top first", "insert-header 2 X-Mid in the middle" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-Top at 0", MT_HDRINSERT, "X-Top", "first", 0)
        T.check(conn, "X-Mid at 2", MT_HDRINSERT, "X-Mid", "in the middle", 2)
        T.check_not(conn, "X-Top at 1", MT_HDRINSERT, "X-Top", "first", 1)
        T.check_not(conn, "X-Top appended", MT_HDRADD, "X-Top")
        mt.disconnect(conn)
    end)

    T.case("change-header replaces the value", function()
        local conn = T.single({ actions = { "change-header Subject 1 a new subject" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "Subject change", MT_HDRCHANGE, "Subject", "a new subject")
        T.check_not(conn, "Subject deletion", MT_HDRDELETE, "Subject")
        mt.disconnect(conn)
    end)

    T.case("change-header to an empty value sends a space, not a deletion", function()
        local conn = T.single({ actions = { "change-header X-Blank 2" },
            headers = { { "X-Blank", "one" }, { "X-Blank", "two" } } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-Blank changed to a space", MT_HDRCHANGE, "X-Blank", " ")
        T.check_not(conn, "X-Blank deletion", MT_HDRDELETE, "X-Blank")
        mt.disconnect(conn)
    end)

    T.case("delete-header removes the n-th occurrence", function()
        local conn = T.single({ actions = { "delete-header X-Junk 2" },
            headers = { { "X-Junk", "one" }, { "X-Junk", "two" } } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-Junk #2 deleted", MT_HDRDELETE, "X-Junk", 2)
        T.check_not(conn, "X-Junk #1 deleted", MT_HDRDELETE, "X-Junk", 1)
        mt.disconnect(conn)
    end)

    T.case("all header actions in one message, plus X-Action-Body-Bytes", function()
        local conn = T.single({
            actions = {
                "add-header X-One 1", "add-header X-Two 2",
                "insert-header 1 X-Ins inserted",
                "change-header Subject 1 changed",
                "delete-header To 1",
            },
            body = { "0123456789\r\n" },
        })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-One", MT_HDRADD, "X-One", "1")
        T.check(conn, "X-Two", MT_HDRADD, "X-Two", "2")
        T.check(conn, "X-Ins", MT_HDRINSERT, "X-Ins", "inserted", 1)
        T.check(conn, "Subject", MT_HDRCHANGE, "Subject", "changed")
        T.check(conn, "To deleted", MT_HDRDELETE, "To", 1)
        T.check(conn, "X-Action-Body-Bytes", MT_HDRADD, "X-Action-Body-Bytes", "12")
        -- Order of requests: as made, the body size last.
        T.expect_added(conn, "X-Action-Body-Bytes", { "12" })
        mt.disconnect(conn)
    end)

    T.case("the X-Action header name is case-insensitive", function()
        local conn = T.connect()
        T.message(conn, { connect = true,
            headers = { { "x-action", "add-header X-Lower yes" } } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-Lower", MT_HDRADD, "X-Lower", "yes")
        mt.disconnect(conn)
    end)

    T.case("an unknown action is ignored", function()
        local conn = T.single({ actions = { "frobnicate the message", "", "add-header X-After ok" } })
        T.expect_reply(conn, SMFIR_CONTINUE, "eom")
        T.check(conn, "X-After", MT_HDRADD, "X-After", "ok")
        mt.disconnect(conn)
    end)

    for _, bad in ipairs({
        "add-header",                   -- no name
        "add-header Bad:Name value",    -- ':' in a header name
        "insert-header top X-Top v",    -- index is not a number
        "change-header Subject",        -- no index
        "delete-header X-Junk one",     -- index is not a number
    }) do
        T.case("malformed \"" .. bad .. "\" fails safe, nothing modified", function()
            local conn = T.single({ actions = { "add-header X-Before yes", bad } })
            T.expect_fail_safe(conn)
            T.check_not(conn, "any header change", MT_HDRCHANGE)
            T.check_not(conn, "any header insertion", MT_HDRINSERT)
            mt.disconnect(conn)
        end)
    end
end)
