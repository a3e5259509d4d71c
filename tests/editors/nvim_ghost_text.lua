-- Drives Neovim like a user, against the real infill-ls server (run by test_neovim.py):
--   nvim --headless -u NONE -i NONE -S nvim_ghost_text.lua
-- Environment: INFILL_REPO, INFILL_SERVER_CMD (JSON list), INFILL_TEST_MODEL, INFILL_WORKDIR,
-- INFILL_RESULT (where the JSON report goes). Every wait is bounded; a watchdog quits after 90 s.
local env = vim.env
local h = dofile(env.INFILL_REPO .. "/tests/editors/nvim_harness.lua")
local report = h.report
report.steps = {}
h.start(90000)

vim.opt.rtp:prepend(env.INFILL_REPO .. "/editors/nvim")
vim.cmd("filetype on")
vim.o.swapfile = false

local infill = require("infill")
local ghost = require("infill.ghost")
infill.setup({
  cmd = vim.json.decode(env.INFILL_SERVER_CMD),
  server = { model = env.INFILL_TEST_MODEL, device = "cpu", maxNewTokensSingleLine = 16, maxNewTokensMultiLine = 16,
            -- the checkpoint's sampled candidates differ from its greedy one (each ~9 in 10): with
            -- 5 sampled, cycling has others to show
            numCandidates = 6 },
  debounce_ms = 30,
  -- The ghost text this plugin draws (what Neovim 0.10/0.11 use); 0.12+ would otherwise
  -- switch to the built-in vim.lsp.inline_completion, which this scenario does not inspect.
  implementation = "plugin",
})

local buf = h.edit("add.py", "import os\n\n\n")
report.filetype = vim.bo[buf].filetype

local sleep, wait_for, keys = h.sleep, h.wait_for, h.keys

local function client()
  return vim.lsp.get_clients({ bufnr = buf, name = "infill-ls" })[1]
end

local function marks()
  return vim.api.nvim_buf_get_extmarks(buf, ghost.namespace, 0, -1, { details = true })
end

--- The ghost text as the user sees it: first line (virt_text) + following lines (virt_lines).
local function shown()
  local m = marks()[1]
  if not m then
    return nil
  end
  local d = m[4]
  local parts = { d.virt_text and d.virt_text[1][1] or "" }
  for _, vl in ipairs(d.virt_lines or {}) do
    table.insert(parts, vl[1][1])
  end
  return table.concat(parts, "\n")
end

local function lines()
  return vim.api.nvim_buf_get_lines(buf, 0, -1, false)
end

local function step(name, value)
  table.insert(report.steps, { name = name, value = value })
end

local function scenario()
  wait_for("the server to attach", function() return client() and client().initialized end)
  wait_for("the model to load", function()
    local res = client():request_sync("workspace/executeCommand", { command = "infill.stats" }, 5000, buf)
    local status = res and res.result and res.result.model and res.result.model.status
    if status == "failed" then
      error("model failed to load: " .. vim.inspect(res.result.model.error))
    end
    return status == "ready"
  end, 60000)
  -- The plugin polls the model's status too, and asks again at the cursor when it turns ready:
  -- let that happen before the scenario counts requests.
  wait_for("the plugin to see the model ready", function() return infill.model.status == "ready" end)

  -- 1. Type a line in insert mode: ghost text appears at the cursor.
  keys("Gidef add(a, b):")
  wait_for("ghost text after typing", function() return shown() ~= nil end)
  local first = shown()
  step("typed", { lines = lines(), ghost = first, mark = marks()[1] })

  -- 2. Leaving insert mode clears it.
  keys("<Esc>")
  wait_for("insert mode to end", function() return vim.api.nvim_get_mode().mode == "n" end)
  step("after_esc", { marks = #marks() })

  -- 3. Entering insert mode at the end of the line asks again.
  keys("A")
  wait_for("ghost text on InsertEnter", function() return shown() ~= nil end)
  step("insert_enter", { ghost = shown() })

  -- 3b. Typing the suggestion's first character keeps the rest, without asking the server again.
  local requests_before = ghost.stats.requests
  local first_char = shown():sub(1, 1)
  keys(first_char)
  wait_for("the typed character", function() return vim.api.nvim_get_current_line() == "def add(a, b):" .. first_char end)
  sleep(100)
  step("typed_through", { ghost = shown(), requests = ghost.stats.requests - requests_before })
  keys("<BS>")
  wait_for("the character deleted", function() return vim.api.nvim_get_current_line() == "def add(a, b):" end)

  -- 4. Moving the cursor clears it.
  keys("<Left>")
  wait_for("the cursor to move", function() return vim.api.nvim_win_get_cursor(0)[2] == #"def add(a, b)" end)
  sleep(100)
  step("after_move", { marks = #marks() })

  -- 5. Retype the last character; accept one word, then the rest.
  keys("<End><BS>:")
  wait_for("ghost text after retyping", function() return shown() ~= nil end)
  local suggestion = shown()
  local before = lines()
  keys("<M-Right>")
  wait_for("one word accepted", function() return not vim.deep_equal(lines(), before) end)
  step("after_word", { lines = lines(), ghost = shown() })
  keys("<Tab>")
  wait_for("the rest accepted", function() return shown() == nil end)
  sleep(50)
  step("accepted", { suggestion = suggestion, before = before, lines = lines(), cursor = vim.api.nvim_win_get_cursor(0),
                     mode = vim.api.nvim_get_mode().mode })
  keys("<Esc>")
  wait_for("normal mode", function() return vim.api.nvim_get_mode().mode == "n" end)

  -- 6. Cycling asks for several candidates (Invoked) and shows the next one.
  vim.api.nvim_buf_set_lines(buf, 2, -1, false, { "def add(a, b)" })
  vim.api.nvim_win_set_cursor(0, { 3, 0 })
  keys("A:")
  wait_for("ghost text before cycling", function() return shown() ~= nil end)
  local before_cycle = shown()
  local requests = ghost.stats.requests
  keys("<M-]>")
  wait_for("the cycling request", function() return ghost.stats.requests > requests end)
  sleep(50)
  local texts, index = ghost.candidates(buf)
  step("cycled", { before = before_cycle, shown = shown(), candidates = texts, index = index })

  -- 6b. Ctrl+] dismisses what is shown and leaves the text alone; then keys do their usual job:
  -- Tab inserts a tab, and a typed character is just typed.
  local before_dismiss = vim.api.nvim_get_current_line()
  keys("<C-]>")
  wait_for("the ghost text dismissed", function() return #marks() == 0 end)
  local dismissed = { marks = #marks(), line = vim.api.nvim_get_current_line(), mode = vim.api.nvim_get_mode().mode,
                      before = before_dismiss }
  keys("<Tab>x")
  local ok = pcall(wait_for, "Tab and x typed", function() return vim.api.nvim_get_current_line() == before_dismiss .. "\tx" end, 2000)
  dismissed.after_keys = vim.api.nvim_get_current_line()
  if not ok then
    error("after Ctrl+], Tab x made the line " .. vim.inspect(dismissed.after_keys))
  end
  step("dismissed", dismissed)
  keys("<BS><BS>")
  wait_for("Tab and x deleted", function() return vim.api.nvim_get_current_line() == before_dismiss end)

  -- 7. Options changed at run time reach the server: python off, then on again.
  vim.cmd("InfillSet languages rust")
  keys("<BS>:")
  requests = ghost.stats.requests
  wait_for("the request with python off", function() return ghost.stats.requests > requests end)
  sleep(100)
  step("python_off", { marks = #marks() })
  vim.cmd("InfillSet languages *")
  keys("<BS>:")
  wait_for("ghost text with python on again", function() return shown() ~= nil end)
  step("python_on", { ghost = shown() })
  keys("<Esc>")
  wait_for("normal mode", function() return vim.api.nvim_get_mode().mode == "n" end)

  -- 8. :InfillToggle: off means no requests at all; on again brings suggestions back.
  vim.cmd("InfillToggle")
  requests = ghost.stats.requests
  keys("A<BS>:")
  sleep(300)
  step("toggled_off", { marks = #marks(), requests = ghost.stats.requests - requests, status = infill.status() })
  keys("<Esc>")
  wait_for("normal mode", function() return vim.api.nvim_get_mode().mode == "n" end)
  vim.cmd("InfillToggle")
  keys("A<BS>:")
  wait_for("ghost text with suggestions on again", function() return shown() ~= nil end)
  keys("<Esc>")
  wait_for("normal mode", function() return vim.api.nvim_get_mode().mode == "n" end)

  -- 9. :InfillRestart: a new server attaches to the buffer and suggests again.
  local old_id = client().id
  vim.cmd("InfillRestart")
  wait_for("a new server", function() return client() and client().id ~= old_id and client().initialized end)
  wait_for("the model to load again", function()
    local res = client():request_sync("workspace/executeCommand", { command = "infill.stats" }, 5000, buf)
    return res and res.result and res.result.model.status == "ready"
  end, 60000)
  keys("A<BS>:")
  wait_for("ghost text from the restarted server", function() return shown() ~= nil end)
  step("restarted", { ghost = shown(), clients = #vim.lsp.get_clients({ bufnr = buf }) })
  keys("<Esc>")
  wait_for("normal mode", function() return vim.api.nvim_get_mode().mode == "n" end)

  -- 10. Prefetch: the cursor coming to rest after a motion or a buffer switch sends one
  -- infill/prefetch (after the 200 ms pause); typing, leaving insert mode, coming back to the
  -- same place, or prefetch = false send none. `received` is the server's count.
  local function received()
    local res = client():request_sync("workspace/executeCommand", { command = "infill.stats" }, 5000, buf)
    return res.result.prefetch.received
  end
  local function settle()
    sleep(400) -- past the 200 ms pause
    return received()
  end
  local function soon_above(count) -- up to 3 s for a prefetch to arrive; the test checks the counts
    for _ = 1, 60 do
      if received() > count then
        break
      end
      sleep(50)
    end
    return settle()
  end
  local prefetched = { start = settle() }
  keys("gg")
  prefetched.after_motion = soon_above(prefetched.start)
  keys("jk") -- away and back within the pause: the same place as the last one sent
  prefetched.after_same_place = settle()
  keys("Go# note")
  wait_for("the typed line", function() return vim.api.nvim_get_current_line() == "# note" end)
  prefetched.after_typing = settle()
  keys("<Esc>")
  prefetched.after_esc = settle()
  vim.cmd("enew")
  vim.cmd("buffer " .. buf)
  prefetched.after_switch = soon_above(prefetched.after_esc)
  infill.config.prefetch = false
  keys("gg")
  prefetched.off = settle()
  infill.config.prefetch = true
  step("prefetch", prefetched)

  -- 11. :InfillStats shows the client's and the server's counters: one more suggestion asked for
  -- and shown, then typed through (shown again, with no request), count in them.
  local notified, counted = {}, {}
  local notify = vim.notify
  local function stats_command()
    vim.cmd("InfillStats")
    table.insert(counted, { ghost.stats.requests, ghost.stats.shown, ghost.stats.accepted })
  end
  vim.notify = function(msg) table.insert(notified, msg) end
  stats_command()
  vim.api.nvim_win_set_cursor(0, { 3, 0 }) -- def add(a, b):
  keys("A<BS>:")
  wait_for("ghost text for the stats", function() return shown() ~= nil end)
  local rest = shown():sub(2)
  keys(shown():sub(1, 1))
  wait_for("typed through", function() return shown() == rest end)
  keys("<Esc>")
  wait_for("normal mode", function() return vim.api.nvim_get_mode().mode == "n" end)
  stats_command()
  vim.notify = notify
  step("stats_commands", { messages = notified, counted = counted })
  report.stats = ghost.stats
end

vim.schedule(function()
  h.run(scenario, function()
    report.plugin_stats = ghost.stats
    local c = client()
    local res = c and c:request_sync("workspace/executeCommand", { command = "infill.stats" }, 5000, buf)
    report.server_stats = res and res.result -- e.g. served but suggestionsShown 0: the model said nothing here
  end)
end)
