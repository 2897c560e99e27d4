"""Scripts the page runs in the browser (Gradio events' `js=`): where the conversation is scrolled to."""

from __future__ import annotations

# After a drawing: scroll the conversation so the drawing's message (its sentence, with the self-check, above
# the image) starts at the top of the view, instead of Gradio's scroll to the bottom (the downloads). Run
# twice: the images finish loading, and Gradio scrolls on their load, after the last update.
SCROLL_TO_DRAWING = """() => {
  const go = () => {
    const chat = document.querySelector('#chat');
    if (!chat) return;
    const msgs = [...chat.querySelectorAll('[data-testid="user"], [data-testid="bot"]')];
    let i = msgs.length - 1;
    while (i >= 0 && msgs[i].dataset.testid !== 'user') i--;
    const turn = msgs.slice(i + 1);  // the answer's messages (its text and its picture are two)
    if (!turn.some((m) => m.querySelector('img'))) return;  // a text answer: Gradio's scroll is right
    const first = turn[0];
    let box = first.parentElement;
    while (box && box.scrollHeight <= box.clientHeight + 1) box = box.parentElement;
    if (!box) return;
    box.scrollTop += first.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
  };
  setTimeout(go, 200);
  setTimeout(go, 900);
}"""
# A new message: back to the bottom of the conversation (after SCROLL_TO_DRAWING, Gradio would otherwise take
# the user for someone reading back and stop following the answer).
SCROLL_TO_BOTTOM = """() => {
  const chat = document.querySelector('#chat');
  const box = chat && [...chat.querySelectorAll('*')].find((e) => e.scrollHeight > e.clientHeight + 1
    && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY));
  if (box) box.scrollTop = box.scrollHeight;
}"""
