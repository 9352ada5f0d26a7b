//! The "Writing a UI" example of docs/nagini.md, run; pointer and key
//! handler routing.
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

/// Pointer handlers get node-local coordinates; the deepest handler wins;
/// key handlers run on the focused node, then its ancestors.
struct Pad {
    log: Vec<String>,
}

#[derive(Clone, Debug)]
enum PadMsg {
    Log(String),
}

impl Component for Pad {
    type Msg = PadMsg;
    fn view(&self) -> Element<PadMsg> {
        use nagini::element::row;
        row()
            .padding(10.0)
            .on_key(|k| Some(PadMsg::Log(format!("root key {:?}", k.key))))
            .on_pointer_move(|p| Some(PadMsg::Log(format!("root move {},{}", p.local_x, p.local_y))))
            .child(
                nagini::element::boxed()
                    .key("pad")
                    .width(100.0)
                    .height(50.0)
                    .focusable(THEME.focus)
                    .on_pointer_down(|p| Some(PadMsg::Log(format!("down {},{} {:?}", p.local_x, p.local_y, p.button))))
                    .on_pointer_up(|p| Some(PadMsg::Log(format!("up {},{}", p.local_x, p.local_y))))
                    .on_pointer_move(|p| Some(PadMsg::Log(format!("pad move {},{}", p.local_x, p.local_y))))
                    .on_key(|k| match k.key {
                        nagini::KeyCode::Char('x') => Some(PadMsg::Log("pad x".into())),
                        _ => None,
                    }),
            )
    }
    fn update(&mut self, msg: PadMsg) -> bool {
        let PadMsg::Log(s) = msg;
        self.log.push(s);
        false
    }
}

#[test]
fn pointer_and_key_handlers_get_what_they_should() {
    use nagini::{Button, KeyCode, KeyEvent, Modifiers};
    let mut ui = Ui::new(Pad { log: vec![] }, 200, 100);
    let mut fb = Framebuffer::new(200, 100, PixelFormat::Xrgb8888);
    ui.frame(&mut fb.canvas());
    let key = |c| InputEvent::KeyDown(KeyEvent { key: KeyCode::Char(c), modifiers: Modifiers::default() });
    ui.handle(InputEvent::PointerMove { x: 15, y: 20 });
    ui.handle(InputEvent::PointerMove { x: 150, y: 80 });
    ui.handle(InputEvent::PointerDown { x: 30, y: 40, button: Button::Right });
    ui.handle(InputEvent::PointerUp { x: 31, y: 41, button: Button::Right });
    ui.handle(key('x'));
    ui.handle(InputEvent::PointerDown { x: 30, y: 40, button: Button::Left }); // focuses the pad
    ui.handle(key('x'));
    ui.handle(key('y'));
    assert_eq!(
        ui.component().log,
        [
            "pad move 5,10",
            "root move 150,80",
            "down 20,30 Some(Right)",
            "up 21,31",
            "root key Char('x')",
            "down 20,30 Some(Left)",
            "pad x",
            "root key Char('y')",
        ]
    );
}
