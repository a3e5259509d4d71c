-- The README's minimal Neovim setup, as a new user has it: `require("infill").setup({})`, infill-ls
-- found on PATH, the shipped model. Run by test_first_seconds.py:
--   nvim --headless -u NONE -i NONE -S nvim_first_seconds.lua
-- Environment: INFILL_REPO, INFILL_WORKDIR, INFILL_RESULT (the JSON report). Records what the server
-- says (window/showMessage, window/logMessage), what the plugin tells the user (vim.notify) and the
-- statusline word while the model loads; types while it loads, then waits without typing.
local env = vim.env
local h = dofile(env.INFILL_REPO .. "/tests/editors/nvim_harness.lua")
local report = h.report
report.messages, report.notes, report.statuses = {}, {}, {}
h.start(100000)

for _, method in ipairs({ "window/showMessage", "window/logMessage" }) do
  vim.lsp.handlers[method] = function(_, params)
    table.insert(report.messages, { method = method, type = params.type, message = params.message })
  end
end
local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(report.notes, { msg = msg, level = level })
  return notify(msg, level, opts)
end
vim.notify_once = function(msg, level, opts)
  for _, n in ipairs(report.notes) do
    if n.msg == msg then return false end
  end
  vim.notify(msg, level, opts)
  return true
end

vim.opt.rtp:prepend(env.INFILL_REPO .. "/editors/nvim")
vim.cmd("filetype on")
vim.o.swapfile = false

local infill = require("infill")
local ghost = require("infill.ghost")
infill.setup({}) -- the README's minimal setup (Neovim 0.11: the plugin's own ghost text)

local buf = h.edit("add.py", "import os\n\n\n")

local wait_for, keys = h.wait_for, h.keys

local function client()
  return vim.lsp.get_clients({ bufnr = buf, name = "infill-ls" })[1]
end

local function record_status()
  local s = infill.status()
  if report.statuses[#report.statuses] ~= s then
    table.insert(report.statuses, s)
  end
end

local function scenario()
  wait_for("the server to attach", function() return client() and client().initialized end, 30000)
  report.init_options = client().config.init_options
  report.init_options_json = vim.json.encode(client().config.init_options)
  keys("Gidef add(a, b):")
  wait_for("the typed line", function() return vim.api.nvim_get_current_line() == "def add(a, b):" end)
  -- The request made for the last key was answered while the model loaded (empty)...
  wait_for("an answer while loading", function() record_status() return ghost.stats.requests >= 1 end, 30000)
  report.loading_when_answered = infill.model.status == "loading"
  report.requests_when_answered = ghost.stats.requests
  -- ... and, with no further key, the suggestion comes once the model is ready.
  wait_for("ghost text without another key", function()
    record_status()
    return #vim.api.nvim_buf_get_extmarks(buf, ghost.namespace, 0, -1, {}) > 0
  end, 80000)
  record_status()
  report.requests_at_ghost = ghost.stats.requests
  report.line_at_ghost = vim.api.nvim_get_current_line()
  report.mode_at_ghost = vim.api.nvim_get_mode().mode
  report.model = infill.model
end

h.run(scenario)
