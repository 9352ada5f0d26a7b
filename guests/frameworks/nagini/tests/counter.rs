//! The "Writing a UI" example of docs/nagini.md, run.
use nagini::element::{column, text};
use nagini::widgets::{button, THEME};
use nagini::{Component, Element, Framebuffer, InputEvent, PixelFormat, Ui};

struct Counter {
    n: u32,
}

#[derive(Clone)]
enum Msg {
    Inc,
}

impl Component for Counter {
    type Msg = Msg;
    fn view(&self) -> Element<Msg> {
        column()
            .padding(20.0)
            .gap(10.0)
            .background(THEME.background)
            .child(text(format!("{}", self.n)).size(32).key("n"))
            .child(button("+1", Msg::Inc, &THEME).key("inc"))
    }
    fn update(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Inc => self.n += 1,
        }
        true
    }
}

#[test]
fn the_docs_counter_counts_clicks() {
    let mut ui = Ui::new(Counter { n: 0 }, 320, 200);
    let mut fb = Framebuffer::new(320, 200, PixelFormat::Xrgb8888);
    ui.frame(&mut fb.canvas());
    // The button is the second child: 20 px padding, 32 px text (37 px line), 10 px gap.
    let (x, y) = (40, 90);
    let b = ui.tree().find(&["inc".into()]).unwrap();
    assert!(ui.tree().rect(b).unwrap().contains(x, y), "{:?}", ui.tree().rect(b));
    ui.handle(InputEvent::PointerDown { x, y, button: nagini::Button::Left });
    ui.handle(InputEvent::PointerUp { x, y, button: nagini::Button::Left });
    assert_eq!(ui.component().n, 1);
    let report = ui.frame(&mut fb.canvas()).clone();
    let n = ui.tree().find(&["n".into()]).unwrap();
    assert_eq!(report.changes.paint, vec![n], "only the number changed");
    assert_eq!(ui.tree().text(n), Some("1"));
}
