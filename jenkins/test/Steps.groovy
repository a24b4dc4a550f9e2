import groovy.transform.CompileDynamic

/** `steps.NAME(...)`: the step itself, even when the library defines a method NAME. */
@CompileDynamic
class Steps {

    private final Binding binding

    Steps(Binding binding) {
        this.binding = binding
    }

    Object methodMissing(String name, Object args) {
        return ((Closure) binding.getVariable(name)).call(*(args as List))
    }

}
